//! The worker's system calls, behind safe wrappers: every `unsafe` block of
//! the worker but those that wasmer's own traits and APIs require (the
//! `LinearMemory` and `Tunables` impls, artifact deserialisation) is here.
//!
//! - [`Reservation`]: an anonymous `PROT_NONE` mapping (`mmap`), made
//!   accessible in part (`mprotect`), its pages given back (`madvise`), and
//!   unmapped when dropped.
//! - [`ImageFile`]: a sealed `memfd` holding a module's initial memory,
//!   which [`Reservation::map_image`] maps copy-on-write at a reservation's
//!   start (`mmap` with `MAP_FIXED`); `MADV_DONTNEED` on those pages then
//!   brings back the image, not zeros.
//! - [`discard_all`]: many reservations' pages given back in one
//!   `process_madvise` on [`own_pidfd`].
//! - [`Reservation::written_pages`]: the pages a reservation's user wrote,
//!   from the `PAGEMAP_SCAN` ioctl on `/proc/self/pagemap` (Linux 6.7 and
//!   later), and [`Reservation::write_zeros`] to clear them in place.
//! - [`poll`] on one descriptor, and [`read_spare`], a `read(2)` into a
//!   `Vec`'s spare capacity, for the connection's non-blocking socket.
//! - [`StdView`]: a tokio socket seen as a `std::net::TcpStream`, borrowed,
//!   so that a serving thread reads and writes it while it stays
//!   registered with tokio.
//! - [`extend_uninit`]: a `Vec` extended by whatever initialises its spare
//!   capacity.
//! - [`interrupt_filter`]: a wasmer trap handler that reads the program
//!   counter from a signal's context.
#![allow(unsafe_code)]

use std::io;
use std::mem::MaybeUninit;
use std::ops::Range;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
use std::ptr::NonNull;
use std::sync::OnceLock;

/// An anonymous private mapping of address space, `PROT_NONE` when made,
/// unmapped when dropped. Nothing else refers to it: its bytes are reached
/// only through the raw pointer [`Reservation::base`].
#[derive(Debug)]
pub struct Reservation {
    base: NonNull<u8>,
    len: usize,
}

// SAFETY: a reservation is plain address space owned by one value; nothing
// in it is tied to the thread that mapped it.
unsafe impl Send for Reservation {}

impl Reservation {
    /// Reserves `len` bytes, none accessible (`MAP_NORESERVE`: no swap or
    /// commit charge until pages are touched).
    pub fn new(len: usize) -> io::Result<Self> {
        // SAFETY: a fresh anonymous mapping at an address the kernel picks;
        // it overlaps nothing that exists.
        let base = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if base == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            base: NonNull::new(base.cast()).expect("mmap does not return null on success"),
            len,
        })
    }

    /// The first byte.
    pub fn base(&self) -> NonNull<u8> {
        self.base
    }

    /// Makes `range` (page-aligned, inside the reservation) readable and
    /// writable; the rest keeps its protection.
    pub fn make_read_write(&mut self, range: Range<usize>) -> io::Result<()> {
        assert!(
            range.start <= range.end && range.end <= self.len,
            "{range:?} outside a reservation of {} bytes",
            self.len
        );
        // SAFETY: `range` lies inside this reservation's own mapping (checked
        // above), which no Rust reference points into.
        let done = unsafe {
            libc::mprotect(
                self.base.as_ptr().add(range.start).cast(),
                range.len(),
                libc::PROT_READ | libc::PROT_WRITE,
            )
        };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }

    /// Maps `image` copy-on-write at its offset in this reservation,
    /// `PROT_NONE` like the rest until [`Reservation::make_read_write`]: writes go to
    /// private copies of the pages, and [`Reservation::discard`] drops them,
    /// so the pages read as the image again.
    pub fn map_image(&mut self, image: &ImageFile) -> io::Result<()> {
        assert!(
            image.end() <= self.len,
            "an image ending at {} bytes over a reservation of {} bytes",
            image.end(),
            self.len
        );
        if image.len == 0 {
            return Ok(());
        }
        // SAFETY: `offset` is inside this reservation (checked above).
        let at = unsafe { self.base.as_ptr().add(image.offset) };
        // SAFETY: `MAP_FIXED` replaces pages of this reservation's own
        // mapping (inside it, checked above), which no Rust reference
        // points into; the kernel keeps its own reference to the file.
        let mapped = unsafe {
            libc::mmap(
                at.cast(),
                image.len,
                libc::PROT_NONE,
                libc::MAP_PRIVATE | libc::MAP_FIXED | libc::MAP_NORESERVE,
                image.fd.as_raw_fd(),
                0,
            )
        };
        if mapped == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        debug_assert_eq!(mapped.cast(), at);
        Ok(())
    }

    /// The pages of `[0, len)` that hold bytes of their own: present,
    /// written, neither the shared zero page nor a file's page (`PAGEMAP_SCAN`
    /// on `/proc/self/pagemap`), as offsets, contiguous ones together.
    /// `None` when there are more than `max_pages`, or the kernel has no
    /// such scan (before Linux 6.7): then only [`Reservation::discard`]
    /// resets them.
    pub fn written_pages(&self, len: usize, max_pages: usize) -> Option<Vec<Range<usize>>> {
        let pagemap = pagemap()?;
        let len = len.min(self.len);
        let start = self.base.as_ptr() as u64;
        let end = start + len as u64;
        let mut regions = [PageRegion::default(); 8];
        let mut scan = PmScanArg {
            size: std::mem::size_of::<PmScanArg>() as u64,
            flags: 0,
            start,
            end,
            walk_end: 0,
            vec: regions.as_mut_ptr() as u64,
            vec_len: regions.len() as u64,
            max_pages: max_pages as u64,
            category_inverted: PAGE_IS_PFNZERO | PAGE_IS_FILE,
            category_mask: PAGE_IS_PRESENT | PAGE_IS_WRITTEN | PAGE_IS_PFNZERO | PAGE_IS_FILE,
            category_anyof_mask: 0,
            return_mask: PAGE_IS_PRESENT,
        };
        // SAFETY: `scan` and the `regions` it points to outlive the call, and
        // the kernel writes at most `vec_len` regions and `walk_end`; the
        // scanned range is this reservation's own.
        let found = unsafe { libc::ioctl(pagemap.as_raw_fd(), PAGEMAP_SCAN, &mut scan) };
        if found < 0 || scan.walk_end < end {
            return None; // no such ioctl, more pages than wanted, or more regions
        }
        let found = usize::try_from(found).ok()?.min(regions.len());
        Some(
            regions[..found]
                .iter()
                .map(|region| (region.start - start) as usize..(region.end - start) as usize)
                .collect(),
        )
    }

    /// Writes zeros over `range` (offsets inside `[0, len)`, readable and
    /// writable), keeping its pages.
    pub fn write_zeros(&mut self, range: Range<usize>) {
        assert!(range.start <= range.end && range.end <= self.len);
        // SAFETY: inside this reservation, which `&mut self` holds alone;
        // the caller made the range accessible (a write to a `PROT_NONE`
        // page would fault, never corrupt).
        unsafe {
            self.base
                .as_ptr()
                .add(range.start)
                .write_bytes(0, range.end - range.start)
        };
    }

    /// Gives the pages of `[0, len)` back to the kernel
    /// (`MADV_DONTNEED`): they read as zeros after, or as the image where
    /// one is mapped ([`Reservation::map_image`]).
    pub fn discard(&mut self, len: usize) -> io::Result<()> {
        let len = len.min(self.len);
        if len == 0 {
            return Ok(());
        }
        // SAFETY: `[0, len)` is inside this reservation's own private
        // mappings; `&mut self` means no one uses it meanwhile.
        let done = unsafe { libc::madvise(self.base.as_ptr().cast(), len, libc::MADV_DONTNEED) };
        if done != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(())
    }
}

impl Drop for Reservation {
    fn drop(&mut self) {
        // SAFETY: the whole mapping made in `Reservation::new`, unused from
        // here on.
        unsafe {
            libc::munmap(self.base.as_ptr().cast(), self.len);
        }
    }
}

/// A module's initial memory in a sealed anonymous file (`memfd_create`):
/// the pages from the first one holding a non-zero byte (its `offset`) to
/// the end, rounded up to whole host pages. The zero pages before it (a
/// Rust or C module's stack, most often) stay anonymous memory, as a
/// write to a zero page costs less there than copying a page of the file.
#[derive(Debug)]
pub struct ImageFile {
    fd: OwnedFd,
    offset: usize,
    len: usize,
}

impl ImageFile {
    /// A file holding `bytes` (memory from address 0), sealed against any
    /// change.
    pub fn new(bytes: &[u8]) -> io::Result<Self> {
        use std::io::Write as _;
        let page = page_size();
        let first = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let offset = first - first % page;
        let bytes = &bytes[offset..];
        // SAFETY: a NUL-terminated name; no other pointer.
        let fd = unsafe {
            libc::memfd_create(
                c"nur-memory-image".as_ptr(),
                libc::MFD_CLOEXEC | libc::MFD_ALLOW_SEALING,
            )
        };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a descriptor just opened, owned by nothing else.
        let fd = unsafe { OwnedFd::from_raw_fd(fd) };
        let len = bytes.len().next_multiple_of(page);
        let mut file = std::fs::File::from(fd);
        file.write_all(bytes)?;
        file.set_len(len as u64)?;
        let fd = OwnedFd::from(file);
        let seals =
            libc::F_SEAL_SHRINK | libc::F_SEAL_GROW | libc::F_SEAL_WRITE | libc::F_SEAL_SEAL;
        // SAFETY: fcntl on a descriptor this function owns; no pointers.
        if unsafe { libc::fcntl(fd.as_raw_fd(), libc::F_ADD_SEALS, seals) } != 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd, offset, len })
    }

    /// Where in memory the image ends: whole host pages.
    pub fn end(&self) -> usize {
        self.offset + self.len
    }
}

/// `PAGEMAP_SCAN`: `_IOWR('f', 16, struct pm_scan_arg)` (linux/fs.h).
const PAGEMAP_SCAN: libc::c_ulong = 0xC060_6610;
const PAGE_IS_WRITTEN: u64 = 1 << 1;
const PAGE_IS_FILE: u64 = 1 << 2;
const PAGE_IS_PRESENT: u64 = 1 << 3;
const PAGE_IS_PFNZERO: u64 = 1 << 5;

/// `struct pm_scan_arg` (linux/fs.h).
#[repr(C)]
struct PmScanArg {
    size: u64,
    flags: u64,
    start: u64,
    end: u64,
    walk_end: u64,
    vec: u64,
    vec_len: u64,
    max_pages: u64,
    category_inverted: u64,
    category_mask: u64,
    category_anyof_mask: u64,
    return_mask: u64,
}

/// `struct page_region` (linux/fs.h).
#[repr(C)]
#[derive(Clone, Copy, Default)]
struct PageRegion {
    start: u64,
    end: u64,
    categories: u64,
}

const _: () = assert!(std::mem::size_of::<PmScanArg>() == 96);

/// `/proc/self/pagemap`, opened once. The worker never forks without an
/// `exec` (a forked child would scan its parent's pages through it).
fn pagemap() -> Option<&'static std::fs::File> {
    static PAGEMAP: OnceLock<Option<std::fs::File>> = OnceLock::new();
    PAGEMAP
        .get_or_init(|| std::fs::File::open("/proc/self/pagemap").ok())
        .as_ref()
}

/// The host's page size.
fn page_size() -> usize {
    // SAFETY: sysconf takes no pointers.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    usize::try_from(size).unwrap_or(4096).max(1)
}

/// The most ranges one `process_madvise` call takes (`UIO_MAXIOV`).
pub const MAX_RANGES: usize = 1024;

/// Gives back the pages of `[0, len)` of each reservation with one
/// `process_madvise(MADV_DONTNEED)` through `pidfd` (this process's own);
/// the bytes done. At most [`MAX_RANGES`] ranges; empty ones are skipped.
pub fn discard_all(
    pidfd: BorrowedFd<'_>,
    reservations: &mut [(&mut Reservation, usize)],
) -> io::Result<usize> {
    let ranges: Vec<libc::iovec> = reservations
        .iter()
        .map(|(reservation, len)| (reservation.base, (*len).min(reservation.len)))
        .filter(|(_, len)| *len > 0)
        .map(|(base, len)| libc::iovec {
            iov_base: base.as_ptr().cast(),
            iov_len: len,
        })
        .collect();
    if ranges.is_empty() {
        return Ok(0);
    }
    if ranges.len() > MAX_RANGES {
        return Err(io::Error::from_raw_os_error(libc::EINVAL));
    }
    // SAFETY: every range is inside a private mapping this process owns, borrowed mutably for the call; `ranges` outlives the call.
    let done = unsafe {
        libc::syscall(
            libc::SYS_process_madvise,
            pidfd.as_raw_fd(),
            ranges.as_ptr(),
            ranges.len(),
            libc::MADV_DONTNEED,
            0,
        )
    };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(done as usize)
}

/// A pidfd of this process (`pidfd_open`), opened once; `None` where the
/// kernel has none.
pub fn own_pidfd() -> Option<BorrowedFd<'static>> {
    static PIDFD: OnceLock<Option<OwnedFd>> = OnceLock::new();
    PIDFD
        .get_or_init(|| {
            // SAFETY: pidfd_open of this process takes no pointers.
            let fd = unsafe { libc::syscall(libc::SYS_pidfd_open, libc::getpid(), 0) };
            // SAFETY: a descriptor just opened, owned by nothing else.
            (fd >= 0).then(|| unsafe { OwnedFd::from_raw_fd(fd as libc::c_int) })
        })
        .as_ref()
        .map(|fd| fd.as_fd())
}

/// A tokio `TcpStream`'s socket as a `std::net::TcpStream`, for as long as
/// the tokio stream is borrowed: the same descriptor, never closed by the
/// view. A serving thread reads and writes a connection through it (in
/// `poll(2)` and plain `read`/`write`, as `crate::socket` does) while the
/// socket stays registered with tokio's I/O driver, which saves the
/// `epoll_ctl` pair that `into_std` and `from_std` cost per hand-off.
/// tokio only caches readiness: a stale "readable" costs it one
/// `WouldBlock`, and every byte that arrives later raises a new edge.
///
/// Written here rather than taken from `socket2::SockRef`, which does the
/// same for socket2's `Socket`: the worker's socket code and WASI's stdio
/// are written against std's `TcpStream`.
pub struct StdView<'a> {
    stream: std::mem::ManuallyDrop<std::net::TcpStream>,
    _socket: std::marker::PhantomData<&'a tokio::net::TcpStream>,
}

impl<'a> StdView<'a> {
    /// Views `socket` (in non-blocking mode, as tokio keeps it).
    pub fn of(socket: &'a tokio::net::TcpStream) -> Self {
        // SAFETY: the descriptor is open for as long as `socket` is
        // borrowed ('a), and the view never closes it (`ManuallyDrop`, and
        // `Deref` gives no way to move the stream out).
        let stream = unsafe { std::net::TcpStream::from_raw_fd(socket.as_raw_fd()) };
        Self {
            stream: std::mem::ManuallyDrop::new(stream),
            _socket: std::marker::PhantomData,
        }
    }
}

impl std::ops::Deref for StdView<'_> {
    type Target = std::net::TcpStream;

    fn deref(&self) -> &std::net::TcpStream {
        &self.stream
    }
}

/// `poll(2)` on one descriptor for `events` (`POLLIN`, `POLLOUT`), at most
/// `timeout_ms`: whether it is ready (or in error, or hung up).
pub fn poll(fd: BorrowedFd<'_>, events: libc::c_short, timeout_ms: i32) -> io::Result<bool> {
    let mut pollfd = libc::pollfd {
        fd: fd.as_raw_fd(),
        events,
        revents: 0,
    };
    // SAFETY: one valid pollfd for the duration of the call.
    match unsafe { libc::poll(&mut pollfd, 1, timeout_ms) } {
        0 => Ok(false),
        1.. => Ok(true),
        _ => Err(io::Error::last_os_error()),
    }
}

/// Extends `out` by `len` bytes that `fill` initialises: it gets the first
/// `len` bytes of the spare capacity and must return them initialised
/// (the same slice, as `MaybeUninit::copy_from_slice` or wasmer's
/// `read_uninit` do); a shorter slice extends `out` by its length.
///
/// # Panics
/// When `fill` returns a slice other than the start of what it was given.
pub fn extend_uninit<E>(
    out: &mut Vec<u8>,
    len: usize,
    fill: impl FnOnce(&mut [MaybeUninit<u8>]) -> Result<&mut [u8], E>,
) -> Result<usize, E> {
    out.reserve(len);
    let spare = &mut out.spare_capacity_mut()[..len];
    let start = spare.as_ptr().cast::<u8>();
    let filled = fill(spare)?;
    assert!(
        filled.as_ptr() == start && filled.len() <= len,
        "extend_uninit: fill returned another slice"
    );
    let filled = filled.len();
    // SAFETY: the `filled` bytes after the current length are initialised:
    // they are the slice `fill` returned as `&mut [u8]` (checked above).
    unsafe { out.set_len(out.len() + filled) };
    Ok(filled)
}

/// `read(2)` from `fd` into the spare capacity of `buf`, at most all of
/// it; the bytes read, which `buf` is extended by.
pub fn read_spare(fd: BorrowedFd<'_>, buf: &mut Vec<u8>) -> io::Result<usize> {
    let spare = buf.spare_capacity_mut();
    // SAFETY: read(2) writes at most `spare.len()` bytes into the spare
    // capacity, which is valid for writes.
    let done = unsafe { libc::read(fd.as_raw_fd(), spare.as_mut_ptr().cast(), spare.len()) };
    if done < 0 {
        return Err(io::Error::last_os_error());
    }
    let done = done as usize;
    // SAFETY: the kernel initialised the first `done` bytes of the spare
    // capacity.
    unsafe { buf.set_len(buf.len() + done) };
    Ok(done)
}

/// A trap handler for a wasmer store: declares an interrupt (`SIGUSR1`)
/// handled, so that wasmer does not unwind, unless `unwinds(pc)` holds for
/// the program counter the signal interrupted (never when that is not
/// known). Every other signal is left to wasmer. Runs in the signal
/// handler: `unwinds` must not allocate or lock.
pub fn interrupt_filter(
    unwinds: impl Fn(usize) -> bool + Send + Sync + 'static,
) -> impl Fn(libc::c_int, *const libc::siginfo_t, *const libc::c_void) -> bool + Send + Sync + 'static
{
    move |signal, _info, context| {
        // SAFETY: wasmer calls a store's trap handler from its `SA_SIGINFO`
        // signal handler, whose third argument is the interrupted thread's
        // `ucontext_t`.
        signal == libc::SIGUSR1 && !unsafe { interrupted_pc(context) }.is_some_and(&unwinds)
    }
}

/// The program counter of the thread a signal interrupted; `None` where it
/// is not known, or for a null `context`.
///
/// # Safety
/// `context` must be null or the `ucontext_t` a `SA_SIGINFO` handler
/// receives.
#[cfg(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
))]
unsafe fn interrupted_pc(context: *const libc::c_void) -> Option<usize> {
    // SAFETY: the caller guarantees `context` is null or a `ucontext_t`.
    let context = unsafe { context.cast::<libc::ucontext_t>().as_ref() }?;
    #[cfg(target_arch = "x86_64")]
    let pc = context.uc_mcontext.gregs[libc::REG_RIP as usize];
    #[cfg(target_arch = "aarch64")]
    let pc = context.uc_mcontext.pc;
    Some(pc as usize)
}

/// See the Linux version: unknown here.
///
/// # Safety
/// None needed; the same signature as the Linux version.
#[cfg(not(all(
    target_os = "linux",
    any(target_arch = "x86_64", target_arch = "aarch64")
)))]
unsafe fn interrupted_pc(_context: *const libc::c_void) -> Option<usize> {
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn extend_uninit_appends_what_fill_initialised() {
        let mut out = b"ab".to_vec();
        let n = extend_uninit(&mut out, 3, |spare| {
            for (byte, value) in spare.iter_mut().zip(b"cd") {
                byte.write(*value);
            }
            // SAFETY: the first two bytes were just written.
            Ok::<_, ()>(unsafe { &mut *(std::ptr::from_mut(&mut spare[..2]) as *mut [u8]) })
        })
        .unwrap();
        assert_eq!((n, out.as_slice()), (2, &b"abcd"[..]));
    }
}
