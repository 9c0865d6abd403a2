//! Echo: the example of the Nur ABI (see ABI.md).
//!
//! The first input chunk is answered at once as an HTTP/1.1 200 response
//! whose body is the chunk itself, then the connection ends.

#[link(wasm_import_module = "nur")]
unsafe extern "C" {
    fn nur_send(p: *const u8, l: usize);
    fn nur_log(p: *const u8, l: usize);
    fn nur_end();
}

#[unsafe(no_mangle)]
pub extern "C" fn poll_stream(ptr: usize, len: usize) {
    // poll_stream(0, 0): the client closed before sending anything.
    let body: &[u8] = if len == 0 {
        &[]
    } else {
        unsafe { std::slice::from_raw_parts(ptr as *const u8, len) }
    };
    let line = format!("echo: {} bytes", body.len());
    let head = format!("HTTP/1.1 200 OK\r\ncontent-length: {}\r\n\r\n", body.len());
    unsafe {
        nur_log(line.as_ptr(), line.len());
        nur_send(head.as_ptr(), head.len());
        nur_send(body.as_ptr(), body.len());
        nur_end();
    }
}

#[unsafe(no_mangle)]
pub extern "C" fn alloc(len: usize) -> usize {
    // One byte at least: a zero-sized allocation is not allowed.
    let layout = std::alloc::Layout::array::<u8>(len.max(1)).unwrap();
    unsafe { std::alloc::alloc(layout) as usize }
}
