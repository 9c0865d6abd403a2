// as-hello: a Nur function in AssemblyScript, on the Nur ABI.
//
// It answers the first chunk a client sends with an HTTP/1.1 200 response
// that greets it and says how many bytes came, and logs the chunk's size.
// Built with `--runtime stub` (a bump allocator: one instance serves one
// connection, so nothing needs freeing) and its aborts sent to the log.

@external("nur", "nur_send")
declare function nur_send(ptr: usize, len: usize): void;

@external("nur", "nur_log")
declare function nur_log(ptr: usize, len: usize): void;

@external("nur", "nur_end")
declare function nur_end(): void;

function send(text: string): void {
  const bytes = String.UTF8.encode(text);
  nur_send(changetype<usize>(bytes), bytes.byteLength);
}

function log(text: string): void {
  const bytes = String.UTF8.encode(text);
  nur_log(changetype<usize>(bytes), bytes.byteLength);
}

/** Where the host writes the next chunk of input (`len` bytes). */
export function alloc(len: i32): usize {
  return heap.alloc(<usize>max(len, 1));
}

/** A chunk of input arrived (`len` 0: the client closed its side). */
export function poll_stream(ptr: usize, len: i32): void {
  log(`as-hello: ${len} bytes`);
  const body = `Hello from AssemblyScript, ${len} bytes\n`;
  send(`HTTP/1.1 200 OK\r\ncontent-length: ${String.UTF8.byteLength(body)}\r\n\r\n${body}`);
  nur_end();
}

/** An assertion or runtime error: logged, then the instance traps. */
function abort(message: string | null, file: string | null, line: u32, column: u32): void {
  const what = message === null ? "" : <string>message;
  const where = file === null ? "?" : <string>file;
  log(`as-hello: abort: ${what} at ${where}:${line}:${column}`);
  unreachable();
}
