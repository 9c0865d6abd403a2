;; stream: a streaming Nur function, written by hand in WebAssembly text.
;;
;; Nothing is answered at once: every input chunk is sent back, ASCII
;; uppercased, as soon as it arrives. When the client closes its sending side
;; (poll_stream(0, 0)) the function sends a trailer line "\n-- N bytes\n",
;; logs "stream: N bytes" and ends the connection.
;;
;; Memory layout (linear memory starts with 2 pages = 128 KiB):
;;   [ 936, 1000)  digits of the trailer's byte count, written right to left
;;   [1000, 1007)  " bytes\n"     (suffix of the trailer)
;;   [1936, 2000)  digits of the log line's byte count
;;   [2000, 2006)  " bytes"       (suffix of the log line)
;;   [4096, ...)   the input buffer: alloc always hands out this one region,
;;                 growing memory when a chunk does not fit. Each chunk is
;;                 uppercased in place and sent from there.
(module
  (import "nur" "nur_send" (func $nur_send (param i32 i32)))
  (import "nur" "nur_log" (func $nur_log (param i32 i32)))
  (import "nur" "nur_end" (func $nur_end))

  (memory (export "memory") 2)
  (data (i32.const 1000) " bytes\n")
  (data (i32.const 2000) " bytes")

  ;; Where the input buffer starts.
  (global $buf i32 (i32.const 4096))
  ;; Bytes received so far on this connection.
  (global $total (mut i64) (i64.const 0))

  ;; Reserve $len bytes: always at $buf, since a chunk is done with before the
  ;; next one is allocated. Grows memory as needed; traps when it cannot.
  (func (export "alloc") (param $len i32) (result i32)
    (local $need i64)
    (local $have i64)
    (local.set $need
      (i64.add (i64.extend_i32_u (global.get $buf)) (i64.extend_i32_u (local.get $len))))
    (local.set $have
      (i64.shl (i64.extend_i32_u (memory.size)) (i64.const 16)))
    (if (i64.gt_u (local.get $need) (local.get $have))
      (then
        (if (i32.eq
              (memory.grow
                (i32.wrap_i64
                  (i64.shr_u
                    (i64.add (i64.sub (local.get $need) (local.get $have)) (i64.const 65535))
                    (i64.const 16))))
              (i32.const -1))
          (then unreachable))))
    (global.get $buf))

  ;; Writes the decimal digits of $n so that they end just before $end;
  ;; returns the address of the first digit.
  (func $utoa (param $n i64) (param $end i32) (result i32)
    (local $p i32)
    (local.set $p (local.get $end))
    (loop $digit
      (local.set $p (i32.sub (local.get $p) (i32.const 1)))
      (i32.store8 (local.get $p)
        (i32.add (i32.const 48) (i32.wrap_i64 (i64.rem_u (local.get $n) (i64.const 10)))))
      (local.set $n (i64.div_u (local.get $n) (i64.const 10)))
      (br_if $digit (i64.ne (local.get $n) (i64.const 0))))
    (local.get $p))

  (func (export "poll_stream") (param $ptr i32) (param $len i32)
    (local $p i32)
    (local $end i32)
    (local $b i32)
    (local $start i32)
    (if (i32.eqz (local.get $len))
      (then
        ;; EOF: "\n-- N bytes\n" to the client ...
        (local.set $start
          (i32.sub (call $utoa (global.get $total) (i32.const 1000)) (i32.const 4)))
        (i32.store (local.get $start) (i32.const 0x202d2d0a)) ;; "\n-- "
        (call $nur_send (local.get $start) (i32.sub (i32.const 1007) (local.get $start)))
        ;; ... "stream: N bytes" to the log, and done.
        (local.set $start
          (i32.sub (call $utoa (global.get $total) (i32.const 2000)) (i32.const 8)))
        (i64.store (local.get $start) (i64.const 0x203a6d6165727473)) ;; "stream: "
        (call $nur_log (local.get $start) (i32.sub (i32.const 2006) (local.get $start)))
        (call $nur_end)
        (return)))
    ;; A chunk: uppercase a-z in place, count it, send it back now.
    (local.set $p (local.get $ptr))
    (local.set $end (i32.add (local.get $ptr) (local.get $len)))
    (loop $each
      (local.set $b (i32.load8_u (local.get $p)))
      (if (i32.lt_u (i32.sub (local.get $b) (i32.const 97)) (i32.const 26))
        (then (i32.store8 (local.get $p) (i32.sub (local.get $b) (i32.const 32)))))
      (local.set $p (i32.add (local.get $p) (i32.const 1)))
      (br_if $each (i32.lt_u (local.get $p) (local.get $end))))
    (global.set $total (i64.add (global.get $total) (i64.extend_i32_u (local.get $len))))
    (call $nur_send (local.get $ptr) (local.get $len)))
)
