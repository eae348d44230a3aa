#!/usr/bin/env bash
# Makes sure Debian's Chromium and its ChromeDriver are installed, for the console's browser
# test (tests/tests/e2e/console_browser.rs drives them over WebDriver). Prints the path of
# chromedriver. As root it installs the packages itself (apt-get install chromium
# chromium-driver); otherwise it says what to install.
set -euo pipefail

say() { echo "tests/browser.sh: $*" >&2; }
die() { say "$*"; exit 1; }

apt_install() {
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends chromium chromium-driver >&2
}

if ! command -v chromium >/dev/null || ! command -v chromedriver >/dev/null; then
  [[ $EUID -eq 0 ]] || die "chromium and chromedriver are needed for the browser test; install Debian's packages: sudo apt-get install chromium chromium-driver"
  command -v apt-get >/dev/null || die "chromium and chromedriver not found, and there is no apt-get to install them with (Debian's packages: chromium, chromium-driver)"
  say "installing Chromium and ChromeDriver from Debian's packages (apt-get install chromium chromium-driver)"
  apt_install || {
    say "apt-get install failed; updating the package lists (apt-get update) and trying again"
    apt-get update -q >&2 && apt_install
  } || die "apt-get install -y --no-install-recommends chromium chromium-driver failed; see the output above"
fi
command -v chromedriver
