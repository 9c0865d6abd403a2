//! A function's nur_log lines can neither forge worker log lines nor flood
//! the log.

mod support;

use std::time::Duration;

use support::{Worker, wat};

#[test]
fn a_newline_in_a_log_line_cannot_start_a_forged_line() {
    let body = r#"
      (data (i32.const 0) "hello\nERROR forged: the worker is compromised\1b[2J\r\tdone")
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (call $log (i32.const 0) (i32.const 55))
        (call $send (local.get $ptr) (local.get $len))
        (call $end))"#;
    let module = support::module_file(&wat(body), ".wat");
    let mut command = Worker::command(module.as_os_str(), &[]);
    // The text format, where a raw newline would start a line of its own.
    let args: Vec<_> = command.get_args().map(|a| a.to_owned()).collect();
    let at = args.iter().position(|a| a == "json").unwrap();
    command = std::process::Command::new(support::BIN);
    command.args(&args[..at]).arg("text").args(&args[at + 1..]);
    let worker = Worker::spawn(command).unwrap();
    assert_eq!(worker.request(b"x"), b"x");
    let line = worker
        .wait_log(&["hello"], Duration::from_secs(5))
        .expect("logged");
    assert!(
        line.contains(r"hello\nERROR forged: the worker is compromised\u{1b}[2J\r\tdone"),
        "{line}"
    );
    let forged: Vec<_> = worker
        .logs()
        .into_iter()
        .filter(|l| l.trim_start().starts_with("ERROR forged") || l.contains('\u{1b}'))
        .collect();
    assert!(forged.is_empty(), "{forged:?}");
}

#[test]
fn past_max_log_bytes_lines_are_dropped_counted_and_noticed_once() {
    // Logs a 20-byte line 1,000 times, then answers.
    let body = r#"
      (data (i32.const 0) "a line of 20 bytes..")
      (func (export "poll_stream") (param $ptr i32) (param $len i32)
        (local $i i32)
        (loop $more
          (call $log (i32.const 0) (i32.const 20))
          (local.set $i (i32.add (local.get $i) (i32.const 1)))
          (br_if $more (i32.lt_u (local.get $i) (i32.const 1000))))
        (call $send (local.get $ptr) (local.get $len))
        (call $end))"#;
    let worker = Worker::wat(&wat(body), &["--max-log-bytes", "1Ki"]);
    for _ in 0..2 {
        assert_eq!(worker.request(b"x"), b"x");
    }
    // 51 lines of 20 bytes fit 1,024 bytes, per connection.
    assert_eq!(
        worker.wait_metric("nur_guest_log_lines_dropped_total", 2.0 * 949.0),
        2.0 * 949.0
    );
    // The log is read from the worker's stderr by another thread: wait for
    // it to settle (a loaded machine reads it late), then count.
    let count = |needle: &str| worker.logs().iter().filter(|l| l.contains(needle)).count();
    let until = std::time::Instant::now() + std::time::Duration::from_secs(10);
    while (count("a line of 20 bytes") < 2 * 51 || count("--max-log-bytes") < 2)
        && std::time::Instant::now() < until
    {
        std::thread::sleep(std::time::Duration::from_millis(50));
    }
    std::thread::sleep(std::time::Duration::from_millis(200));
    assert_eq!(count("a line of 20 bytes"), 2 * 51);
    assert_eq!(count("--max-log-bytes"), 2, "one notice per connection");
}
