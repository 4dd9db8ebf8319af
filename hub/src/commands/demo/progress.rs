//! The demo's progress lines on stderr. On a terminal the current step is one line with a
//! spinner, redrawn in place, and finished steps stay as `✓` lines; otherwise (a pipe, a log
//! file, CI) every step is printed once as a plain line, with no control characters.

use std::io::{IsTerminal, Write};

/// Spinner frames.
const FRAMES: &[char] = &['⠋', '⠙', '⠹', '⠸', '⠼', '⠴', '⠦', '⠧', '⠇', '⠏'];

/// Progress output on stderr.
#[derive(Debug)]
pub(crate) struct Progress {
    tty: bool,
    /// The step being worked on, redrawn by [`Progress::tick`] on a terminal.
    current: Option<String>,
    frame: usize,
}

impl Progress {
    /// Progress on stderr, animated when stderr is a terminal.
    pub(crate) fn stderr() -> Self {
        Progress {
            tty: std::io::stderr().is_terminal(),
            current: None,
            frame: 0,
        }
    }

    /// Starts a step: `fetching news…`.
    pub(crate) fn start(&mut self, step: impl Into<String>) {
        let step = step.into();
        if self.tty {
            self.current = Some(step);
            self.redraw();
        } else {
            write_err(&format!("… {step}\n"));
        }
    }

    /// Advances the spinner of the current step (a no-op off a terminal).
    pub(crate) fn tick(&mut self) {
        if self.tty && self.current.is_some() {
            self.frame = (self.frame + 1) % FRAMES.len();
            self.redraw();
        }
    }

    /// Updates the current step's text (on a terminal only; pipes get the final line).
    pub(crate) fn update(&mut self, step: impl Into<String>) {
        if self.tty {
            self.current = Some(step.into());
            self.redraw();
        }
    }

    /// Finishes the current step with a result line.
    pub(crate) fn done(&mut self, line: impl AsRef<str>) {
        let line = line.as_ref();
        if self.tty {
            self.current = None;
            write_err(&format!("\r\x1b[2K✓ {line}\n"));
        } else {
            write_err(&format!("✓ {line}\n"));
        }
    }

    /// A detail line under the current step (kept above the spinner on a terminal).
    pub(crate) fn note(&mut self, line: impl AsRef<str>) {
        let line = line.as_ref();
        if self.tty {
            write_err(&format!("\r\x1b[2K  {line}\n"));
            self.redraw();
        } else {
            write_err(&format!("  {line}\n"));
        }
    }

    /// Clears the spinner line (before an error is printed, or at the end).
    pub(crate) fn clear(&mut self) {
        if self.tty && self.current.take().is_some() {
            write_err("\r\x1b[2K");
        }
    }

    fn redraw(&self) {
        if let Some(step) = &self.current {
            write_err(&format!("\r\x1b[2K{} {step}", FRAMES[self.frame]));
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

/// Progress is best effort: a closed stderr is no reason to fail the demo.
fn write_err(text: &str) {
    let mut err = std::io::stderr().lock();
    let _ = err.write_all(text.as_bytes()).and_then(|()| err.flush());
}
