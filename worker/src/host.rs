//! The host functions of the ABI (`nur_send`, `nur_log`, `nur_end`) and
//! the per-instance state they reach: output, log budget, deadline (and
//! what the WASI functions of `wasi.rs` keep: stdout and stderr lines not
//! yet ended, the exit code, calls to unsupported functions, and a
//! command's connection).

use std::borrow::Cow;
use std::net::TcpStream;
use std::sync::Arc;
use std::time::{Duration, Instant};

use wasmer::{FunctionEnvMut, Memory, RuntimeError};

use crate::fault::HostFault;
use crate::sys;

/// Longest `nur_log` line kept; the rest is cut.
pub(crate) const MAX_LOG_LINE: usize = 16 * 1024;

/// Host-side state of one instance, reached from the host functions.
pub(crate) struct HostState {
    pub(crate) memory: Option<Memory>,
    pub(crate) output: Vec<u8>,
    pub(crate) ended: bool,
    pub(crate) max_output: usize,
    pub(crate) function: Arc<str>,
    pub(crate) connection: u64,
    pub(crate) deadline: Instant,
    /// Bytes of `nur_log` lines this connection may still log.
    pub(crate) log_left: u64,
    /// Lines dropped once `log_left` ran out.
    pub(crate) log_dropped: u64,
    /// WASI: what was written to fd 1 and fd 2 since their last newline.
    pub(crate) stdio: [Vec<u8>; 2],
    /// WASI: the code of `proc_exit`, once called.
    pub(crate) exit: Option<i32>,
    /// WASI: calls of each unsupported function (answered `ENOSYS`).
    pub(crate) unsupported: Vec<(Arc<str>, u64)>,
    /// WASI: the one argument, the function's name, NUL-terminated.
    pub(crate) argument: Arc<[u8]>,
    /// WASI: the environment, `NAME=value` NUL-terminated each.
    pub(crate) environment: Arc<[Box<[u8]>]>,
    /// A WASI command's connection, while `_start` runs.
    pub(crate) command: Option<CommandIo>,
}

/// The connection of a WASI command: its stdin (fd 0) reads the socket,
/// its stdout (fd 1) and `nur_send` write it.
pub(crate) struct CommandIo {
    pub(crate) stream: TcpStream,
    pub(crate) idle: Duration,
    /// Bytes read from the socket and not yet handed to the guest, from
    /// `taken` on; its capacity is `--max-chunk`.
    pub(crate) input: Vec<u8>,
    pub(crate) taken: usize,
    /// The client has closed its side.
    pub(crate) eof: bool,
    pub(crate) bytes_in: u64,
    pub(crate) bytes_out: u64,
}

impl CommandIo {
    /// Sends `bytes` to the client, waiting while the client does not read
    /// (at most the idle timeout, never past `deadline`).
    pub(crate) fn send(&mut self, bytes: &[u8], deadline: Instant) -> Result<(), RuntimeError> {
        crate::socket::write(&self.stream, bytes, self.idle, deadline)
            .map_err(|close| RuntimeError::user(Box::new(HostFault::Closed { close })))?;
        self.bytes_out += bytes.len() as u64;
        Ok(())
    }

    /// The input not yet handed to the guest; reads the socket when there
    /// is none (empty at EOF).
    pub(crate) fn pending(&mut self, deadline: Instant) -> Result<&[u8], RuntimeError> {
        if self.taken == self.input.len() && !self.eof {
            self.taken = 0;
            let read = crate::socket::read(&self.stream, &mut self.input, self.idle, deadline)
                .map_err(|close| RuntimeError::user(Box::new(HostFault::Closed { close })))?;
            self.eof = read == 0;
            self.bytes_in += read as u64;
        }
        Ok(&self.input[self.taken..])
    }
}

impl HostState {
    /// Takes `len` bytes of the log budget; false (and the line dropped and
    /// counted) once a line does not fit. The first drop is logged.
    pub(crate) fn admit_log(&mut self, len: u32) -> bool {
        if self.log_dropped == 0 && u64::from(len) <= self.log_left {
            self.log_left -= u64::from(len);
            return true;
        }
        if self.log_dropped == 0 {
            tracing::warn!(
                function = %self.function,
                connection = self.connection,
                "the function reached --max-log-bytes: its further nur_log lines on this connection are dropped"
            );
        }
        self.log_dropped += 1;
        false
    }

    /// Fails with `timeout` once the connection's deadline has passed: a
    /// guest calling host functions in a loop stops at its next call, at a
    /// point where returning an error is safe (see `deadline.rs`).
    pub(crate) fn check_deadline(&self, function: &'static str) -> Result<(), RuntimeError> {
        if Instant::now() >= self.deadline {
            return Err(RuntimeError::user(Box::new(HostFault::Timeout {
                function,
            })));
        }
        Ok(())
    }

    /// Appends guest memory `[ptr, ptr + len)` to `out` (one copy, straight
    /// from the memory), or fails with `bad_pointer` without reading.
    pub(crate) fn read_into(
        state: &HostState,
        store: &impl wasmer::AsStoreRef,
        function: &'static str,
        ptr: i32,
        len: i32,
        out: &mut Vec<u8>,
    ) -> Result<(), RuntimeError> {
        let (ptr, len) = (ptr as u32, len as u32);
        let bad_pointer =
            || RuntimeError::user(Box::new(HostFault::BadPointer { function, ptr, len }));
        let memory = state.memory.as_ref().ok_or_else(bad_pointer)?;
        let view = memory.view(store);
        let end = u64::from(ptr) + u64::from(len);
        if end > view.data_size() {
            return Err(bad_pointer());
        }
        let len = len as usize;
        let filled = sys::extend_uninit(out, len, |spare| view.read_uninit(u64::from(ptr), spare))
            .map_err(|_| bad_pointer())?;
        debug_assert_eq!(filled, len);
        Ok(())
    }
}

pub(crate) fn nur_send(
    mut env: FunctionEnvMut<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<(), RuntimeError> {
    let (state, store) = env.data_and_store_mut();
    state.check_deadline("nur_send")?;
    if state.ended {
        return Ok(());
    }
    let ulen = len as u32 as usize;
    if state.output.len().saturating_add(ulen) > state.max_output {
        return Err(RuntimeError::user(Box::new(HostFault::OutputLimit {
            function: "nur_send",
            limit: state.max_output,
        })));
    }
    let mut output = std::mem::take(&mut state.output);
    let read = HostState::read_into(state, &store, "nur_send", ptr, len, &mut output);
    // A command's output goes to the client as it is sent.
    let sent = match (&read, state.command.as_mut()) {
        (Ok(()), Some(io)) => {
            let sent = io.send(&output, state.deadline);
            output.clear();
            sent
        }
        _ => Ok(()),
    };
    state.output = output;
    read.and(sent)
}

pub(crate) fn nur_log(
    mut env: FunctionEnvMut<'_, HostState>,
    ptr: i32,
    len: i32,
) -> Result<(), RuntimeError> {
    let shown = (len as u32).min(MAX_LOG_LINE as u32);
    let (state, store) = env.data_and_store_mut();
    state.check_deadline("nur_log")?;
    // A bad pointer is a fault whether the line is logged or not.
    let end = u64::from(ptr as u32) + u64::from(shown);
    let size = state
        .memory
        .as_ref()
        .map_or(0, |m| m.view(&store).data_size());
    if end > size {
        return Err(RuntimeError::user(Box::new(HostFault::BadPointer {
            function: "nur_log",
            ptr: ptr as u32,
            len: shown,
        })));
    }
    // Below INFO, or past the connection's log budget, nothing is copied.
    if !tracing::enabled!(target: "nur::function", tracing::Level::INFO) || !state.admit_log(shown)
    {
        return Ok(());
    }
    let mut bytes = Vec::new();
    HostState::read_into(state, &store, "nur_log", ptr, shown as i32, &mut bytes)?;
    log_line(state, None, &bytes, shown != len as u32);
    Ok(())
}

/// Logs one line of the guest (admitted to the budget already): UTF-8 with
/// invalid sequences replaced, control characters escaped. `stream` is
/// `stdout` or `stderr` for WASI's `fd_write`, none for `nur_log`.
pub(crate) fn log_line(state: &HostState, stream: Option<&'static str>, bytes: &[u8], cut: bool) {
    let line = String::from_utf8_lossy(bytes);
    let cut = if cut { " [cut]" } else { "" };
    match stream {
        None => tracing::info!(
            target: "nur::function",
            function = %state.function,
            connection = state.connection,
            "{}{cut}",
            escape_controls(line.trim_end_matches('\n'))
        ),
        Some(stream) => tracing::info!(
            target: "nur::function",
            function = %state.function,
            connection = state.connection,
            stream,
            "{}{cut}",
            escape_controls(line.trim_end_matches('\n'))
        ),
    }
}

/// `line` with its control characters escaped (`\n`, `\r`, `\t`, `\u{1b}`...,
/// and the Unicode line and paragraph separators), so that a guest's line is
/// one line of the worker's log in any format and cannot pass for another.
fn escape_controls(line: &str) -> Cow<'_, str> {
    let escaped = |c: char| c.is_control() || matches!(c, '\u{2028}' | '\u{2029}');
    if !line.chars().any(escaped) {
        return Cow::Borrowed(line);
    }
    let mut out = String::with_capacity(line.len() + 16);
    for c in line.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            c if escaped(c) => out.push_str(&format!("\\u{{{:x}}}", u32::from(c))),
            c => out.push(c),
        }
    }
    Cow::Owned(out)
}

pub(crate) fn nur_end(mut env: FunctionEnvMut<'_, HostState>) -> Result<(), RuntimeError> {
    let state = env.data_mut();
    state.check_deadline("nur_end")?;
    state.ended = true;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::escape_controls;

    #[test]
    fn control_characters_are_escaped() {
        assert_eq!(escape_controls("plain text"), "plain text");
        assert_eq!(
            escape_controls("a\nERROR forged\r\t\u{1b}[31m\u{2028}"),
            "a\\nERROR forged\\r\\t\\u{1b}[31m\\u{2028}"
        );
    }
}
