//! Progress of long steps, one line per function: a spinner on a
//! terminal (indicatif), else one line on stderr per step, so that a CI
//! log shows each step too.

use std::io::IsTerminal;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

/// The progress lines of one command.
pub struct Progress {
    bars: MultiProgress,
    terminal: bool,
}

/// The line of one function.
pub struct Line {
    bar: ProgressBar,
    label: String,
    terminal: bool,
    last: Mutex<String>,
}

impl Progress {
    pub fn new() -> Progress {
        let terminal = std::io::stderr().is_terminal();
        let target = if terminal {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        Progress {
            bars: MultiProgress::with_draw_target(target),
            terminal,
        }
    }

    /// A line for function `label`, `width` the longest label's length.
    pub fn line(&self, label: &str, width: usize) -> Line {
        let bar = self.bars.add(ProgressBar::new_spinner());
        bar.set_style(
            ProgressStyle::with_template(&format!("{{spinner}} {{prefix:{width}}} {{msg}}"))
                .expect("a valid template"),
        );
        bar.set_prefix(label.to_string());
        if self.terminal {
            bar.enable_steady_tick(Duration::from_millis(120));
        }
        Line {
            bar,
            label: label.to_string(),
            terminal: self.terminal,
            last: Mutex::new(String::new()),
        }
    }
}

impl Default for Progress {
    fn default() -> Self {
        Self::new()
    }
}

impl Line {
    /// The step the function is at; said once per change.
    pub fn step(&self, message: impl Into<String>) {
        let message = message.into();
        let mut last = self.last.lock().unwrap();
        if *last == message {
            return;
        }
        if !self.terminal {
            eprintln!("{}: {message}", self.label);
        }
        self.bar.set_message(message.clone());
        *last = message;
    }

    /// The line is done: the spinner stops and the line is cleared (the
    /// command prints the outcome).
    pub fn finish(&self) {
        self.bar.finish_and_clear();
    }
}
