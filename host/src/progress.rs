//! Progress bars for long work (plugin builds, replays), drawn on stderr only when it is a
//! terminal: tests, pipes and CI logs never see them.

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// Whether progress bars are drawn: stderr is a terminal and `RIPOSTE_NO_PROGRESS` is unset.
pub fn enabled() -> bool {
    std::io::stderr().is_terminal() && std::env::var_os("RIPOSTE_NO_PROGRESS").is_none()
}

/// A bar of `len` steps labelled `prefix` (hidden when [`enabled`] is false).
pub fn bar(len: u64, prefix: &str) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let bar = ProgressBar::with_draw_target(Some(len), ProgressDrawTarget::stderr());
    bar.set_style(
        ProgressStyle::with_template("{prefix:>10} [{bar:30}] {pos}/{len} {wide_msg}")
            .expect("the template is valid")
            .progress_chars("=> "),
    );
    bar.set_prefix(prefix.to_owned());
    bar
}

/// A spinner with a message, ticking on its own (hidden when [`enabled`] is false).
pub fn spinner(message: &str) -> ProgressBar {
    if !enabled() {
        return ProgressBar::hidden();
    }
    let spinner = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
    spinner.set_style(
        ProgressStyle::with_template("{spinner} {msg} ({elapsed})").expect("the template is valid"),
    );
    spinner.set_message(message.to_owned());
    spinner.enable_steady_tick(Duration::from_millis(120));
    spinner
}
