//! A read-ahead window for the demuxers.
//!
//! The demuxers read element by element at absolute positions (`seek`, then `read`).
//! `std::io::BufReader` throws its buffer away on every seek, so behind one each frame still
//! cost an `lseek` and a `read` system call. [`WindowReader`] keeps one window of the source
//! and answers seeks and reads that land inside it from memory; the source is touched only to
//! refill the window, for reads larger than the window, and for `SeekFrom::End`.
//!
//! The source must not change while it is read through the window (recorded files are complete
//! or recovered before they are played).
use std::io::{self, Read, Seek, SeekFrom};

/// Default window: a second of 1 Mb/s media is ~125 KiB, so most frames are served from memory.
pub(crate) const WINDOW: usize = 64 * 1024;

pub(crate) struct WindowReader<R> {
    inner: R,
    buf: Box<[u8]>,
    /// Source position of `buf[0]`.
    start: u64,
    /// Valid bytes in `buf`.
    len: usize,
    /// The logical position (where the next read starts).
    pos: u64,
    /// Where `inner` is positioned, when known.
    inner_pos: Option<u64>,
}

impl<R: Read + Seek> WindowReader<R> {
    pub(crate) fn new(inner: R) -> Self {
        Self::with_capacity(WINDOW, inner)
    }

    pub(crate) fn with_capacity(capacity: usize, inner: R) -> Self {
        WindowReader {
            inner,
            buf: vec![0; capacity.max(1)].into_boxed_slice(),
            start: 0,
            len: 0,
            pos: 0,
            inner_pos: None,
        }
    }

    fn in_window(&self) -> Option<usize> {
        let off = self.pos.checked_sub(self.start)?;
        (off < self.len as u64).then_some(off as usize)
    }

    fn position_inner(&mut self) -> io::Result<()> {
        if self.inner_pos != Some(self.pos) {
            self.inner_pos = None;
            self.inner.seek(SeekFrom::Start(self.pos))?;
            self.inner_pos = Some(self.pos);
        }
        Ok(())
    }
}

impl<R: Read + Seek> Read for WindowReader<R> {
    fn read(&mut self, out: &mut [u8]) -> io::Result<usize> {
        if out.is_empty() {
            return Ok(0);
        }
        if self.in_window().is_none() {
            self.position_inner()?;
            if out.len() >= self.buf.len() {
                // Larger than the window: straight from the source, window kept.
                let n = self.inner.read(out)?;
                self.pos += n as u64;
                self.inner_pos = Some(self.pos);
                return Ok(n);
            }
            self.len = 0;
            let n = self.inner.read(&mut self.buf)?;
            self.start = self.pos;
            self.len = n;
            self.inner_pos = Some(self.pos + n as u64);
            if n == 0 {
                return Ok(0);
            }
        }
        let off = self.in_window().unwrap_or(0);
        let n = out.len().min(self.len - off);
        out[..n].copy_from_slice(&self.buf[off..off + n]);
        self.pos += n as u64;
        Ok(n)
    }
}

impl<R: Read + Seek> Seek for WindowReader<R> {
    fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
        self.pos = match to {
            SeekFrom::Start(p) => p,
            SeekFrom::Current(d) => self.pos.checked_add_signed(d).ok_or_else(|| {
                io::Error::new(io::ErrorKind::InvalidInput, "seek before the start")
            })?,
            SeekFrom::End(_) => {
                self.inner_pos = None;
                let p = self.inner.seek(to)?;
                self.inner_pos = Some(p);
                p
            }
        };
        Ok(self.pos)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    /// A source that counts the calls reaching it.
    struct Counting {
        inner: Cursor<Vec<u8>>,
        reads: usize,
        seeks: usize,
    }

    impl Read for Counting {
        fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
            self.reads += 1;
            self.inner.read(buf)
        }
    }

    impl Seek for Counting {
        fn seek(&mut self, to: SeekFrom) -> io::Result<u64> {
            self.seeks += 1;
            self.inner.seek(to)
        }
    }

    fn data(n: usize) -> Vec<u8> {
        (0..n).map(|i| (i * 7 % 251) as u8).collect()
    }

    #[test]
    fn reads_at_positions_match_the_source_and_stay_in_the_window() {
        let source = data(1000);
        // (window, [(seek to, read n)], reads that reach the source, seeks that reach it)
        let table: &[(usize, &[(u64, usize)], usize, usize)] = &[
            // Element by element inside one window: one refill.
            (256, &[(0, 8), (8, 4), (12, 100), (3, 5), (200, 56)], 1, 1),
            // Running off the window's end: a second refill, contiguous (no second seek).
            (256, &[(0, 4), (250, 10)], 2, 1),
            // Jumping out and back: a seek and a refill each time.
            (256, &[(0, 4), (600, 4), (2, 4)], 3, 3),
            // Larger than the window: straight from the source.
            (64, &[(10, 500)], 1, 1),
            // Up to the end, then past it: one refill, one empty read.
            (64, &[(990, 10), (1000, 4)], 2, 1),
        ];
        for &(window, ops, want_reads, want_seeks) in table {
            let mut r = WindowReader::with_capacity(
                window,
                Counting {
                    inner: Cursor::new(source.clone()),
                    reads: 0,
                    seeks: 0,
                },
            );
            for &(at, n) in ops {
                r.seek(SeekFrom::Start(at)).unwrap();
                let mut got = vec![0; n];
                let mut filled = 0;
                while filled < n {
                    let k = r.read(&mut got[filled..]).unwrap();
                    if k == 0 {
                        break;
                    }
                    filled += k;
                }
                got.truncate(filled);
                let from = (at as usize).min(source.len());
                let to = (at as usize + n).min(source.len());
                assert_eq!(got, &source[from..to], "window {window}, read {n} at {at}");
            }
            let ctx = format!("window {window} {ops:?}");
            assert_eq!(r.inner.reads, want_reads, "{ctx}");
            assert_eq!(r.inner.seeks, want_seeks, "{ctx}");
        }
    }

    #[test]
    fn seek_current_and_end() {
        let mut r = WindowReader::with_capacity(16, Cursor::new(data(100)));
        assert_eq!(r.seek(SeekFrom::End(0)).unwrap(), 100);
        assert_eq!(r.seek(SeekFrom::Current(-10)).unwrap(), 90);
        let mut b = [0u8; 4];
        r.read_exact(&mut b).unwrap();
        assert_eq!(&b, &data(100)[90..94]);
        assert_eq!(r.seek(SeekFrom::Current(2)).unwrap(), 96);
        assert!(r.seek(SeekFrom::Current(-1000)).is_err());
        assert!(r.read_exact(&mut [0u8; 8]).is_err(), "only 4 bytes left");
    }
}
