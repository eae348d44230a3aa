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
pub(crate) fn spinner(message: &str) -> ProgressBar {
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

/// Numbered steps of a long command: a bar with the current step's text when stderr is a
/// terminal, otherwise one `[n/total] text` line per step (logs and CI keep a readable trail).
#[derive(Debug)]
pub struct Steps {
    bar: ProgressBar,
    total: u64,
}

impl Steps {
    /// `total` steps labelled `prefix`.
    pub fn new(total: u64, prefix: &str) -> Self {
        Self {
            bar: bar(total, prefix),
            total,
        }
    }

    /// Step `n` (from 1) begins.
    pub fn start(&self, n: u64, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("[{n}/{}] {text}", self.total);
        } else {
            self.bar.set_position(n.saturating_sub(1));
            self.bar.set_message(text.to_owned());
        }
    }

    /// A line of detail under the current step, printed above the bar.
    pub fn note(&self, text: &str) {
        if self.bar.is_hidden() {
            eprintln!("      {text}");
        } else {
            self.bar.println(format!("      {text}"));
        }
    }

    /// Runs `work` with the bar cleared, for work that draws its own progress.
    pub fn suspend<R>(&self, work: impl FnOnce() -> R) -> R {
        self.bar.suspend(work)
    }

    /// Every step is done: the bar goes away.
    pub fn finish(&self) {
        self.bar.set_position(self.total);
        self.bar.finish_and_clear();
    }
}

impl Drop for Steps {
    /// A command that stops early (an error) does not leave its bar above the message.
    fn drop(&mut self) {
        if !self.bar.is_finished() {
            self.bar.finish_and_clear();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    /// A terminal that keeps the lines written to it.
    #[derive(Debug, Default, Clone)]
    struct Recorder(Arc<Mutex<Vec<String>>>);

    impl indicatif::TermLike for Recorder {
        fn width(&self) -> u16 {
            100
        }
        fn move_cursor_up(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_down(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_right(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn move_cursor_left(&self, _: usize) -> std::io::Result<()> {
            Ok(())
        }
        fn write_line(&self, s: &str) -> std::io::Result<()> {
            self.0.lock().unwrap().push(s.to_owned());
            Ok(())
        }
        fn write_str(&self, s: &str) -> std::io::Result<()> {
            self.write_line(s)
        }
        fn clear_line(&self) -> std::io::Result<()> {
            Ok(())
        }
        fn flush(&self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn on_a_terminal_steps_move_the_bar_and_notes_print_above_it() {
        let term = Recorder::default();
        let target = ProgressDrawTarget::term_like(Box::new(term.clone()));
        let steps = Steps {
            bar: ProgressBar::with_draw_target(Some(5), target),
            total: 5,
        };
        steps.start(3, "writing the sample policy");
        assert_eq!(steps.bar.position(), 2, "two steps are done");
        assert_eq!(steps.bar.message(), "writing the sample policy");
        steps.note("cycle 1: 8 Malops");
        let lines = term.0.lock().unwrap().clone();
        assert!(
            lines.iter().any(|l| l.contains("cycle 1: 8 Malops")),
            "{lines:?}"
        );
        steps.finish();
        assert!(steps.bar.is_finished());
        assert_eq!(steps.bar.position(), 5);
    }
}
