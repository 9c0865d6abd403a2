//! shout: a WASI command in plain Rust (std, wasm32-wasip1), no Nur ABI.
//!
//! The worker runs `main` once per connection: stdin is what the client
//! sends, stdout goes back to it, stderr is the function's log. Every line
//! is answered in capitals as soon as it arrives (Rust's stdout is flushed
//! at each newline), so a client can talk to it line by line; at EOF it
//! logs how many lines it answered.

use std::io::{self, BufRead, Write};

fn main() {
    let mut out = io::stdout().lock();
    let mut lines = 0u64;
    for line in io::stdin().lock().lines() {
        let Ok(line) = line else {
            eprintln!("shout: the input is not UTF-8");
            std::process::exit(2);
        };
        if writeln!(out, "{}", line.to_uppercase()).is_err() {
            return;
        }
        lines += 1;
    }
    eprintln!("shout: {lines} lines");
}
