//! What a durable append costs, asked of the kernel four ways. The spool commits each group of
//! requests by writing it after the segment's records and calling `fdatasync`; this program
//! times that against the alternatives on the disk under DIR, so that the choice rests on a
//! measurement of the machine at hand:
//!
//! - `write+fdatasync`: `pwrite` into the page cache, then `fdatasync` (the spool's way);
//! - `pwritev2 RWF_DSYNC`: one call that writes and waits for the data to be durable;
//! - `O_DIRECT+fdatasync`: the group's 4 KiB blocks written past the page cache (the last,
//!   partial block rewritten with each group), then `fdatasync` for the disk's cache;
//! - `O_DIRECT|O_DSYNC`: the same blocks, durable when the write returns.
//!
//! Each way appends GROUPS groups of BYTES bytes to a 64 MiB file written with zeros and synced
//! beforehand, as the spool's segments are (see `spool.rs`), and the ways take turns for ROUNDS
//! rounds. Printed per round and way, tab-separated: the process's CPU time per commit (user +
//! system) and the median and p99 wall time of a commit.
//!
//!   cargo run --release --example commit_paths -- DIR [ROUNDS] [GROUPS] [BYTES]

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{FileExt, OpenOptionsExt};
use std::os::unix::io::AsRawFd;
use std::path::Path;
use std::time::{Duration, Instant};

const FILE_BYTES: u64 = 64 << 20;
const BLOCK: usize = 4096;

#[derive(Clone, Copy)]
enum Way {
    WriteSync,
    DsyncWrite,
    DirectSync,
    DirectDsync,
}

impl Way {
    const ALL: [Way; 4] = [
        Way::WriteSync,
        Way::DsyncWrite,
        Way::DirectSync,
        Way::DirectDsync,
    ];

    fn name(self) -> &'static str {
        match self {
            Way::WriteSync => "write+fdatasync",
            Way::DsyncWrite => "pwritev2 RWF_DSYNC",
            Way::DirectSync => "O_DIRECT+fdatasync",
            Way::DirectDsync => "O_DIRECT|O_DSYNC",
        }
    }

    fn flags(self) -> i32 {
        match self {
            Way::WriteSync | Way::DsyncWrite => 0,
            Way::DirectSync => libc::O_DIRECT,
            Way::DirectDsync => libc::O_DIRECT | libc::O_DSYNC,
        }
    }
}

/// A buffer aligned for `O_DIRECT`: whole blocks at a block boundary.
struct Aligned {
    blocks: Vec<[u8; BLOCK]>,
}

impl Aligned {
    fn new(bytes: usize) -> Aligned {
        // An array of BLOCK bytes has alignment 1; over-allocate by a block and start at the
        // first boundary instead.
        Aligned {
            blocks: vec![[0; BLOCK]; bytes.div_ceil(BLOCK) + 1],
        }
    }

    fn as_mut(&mut self) -> &mut [u8] {
        let bytes = self.blocks.as_flattened_mut();
        let skip = bytes.as_ptr().align_offset(BLOCK);
        let usable = (bytes.len() - skip) / BLOCK * BLOCK;
        &mut bytes[skip..skip + usable]
    }
}

fn cpu_time() -> Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes a whole rusage into the pointer it is given.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let tv = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    tv(usage.ru_utime) + tv(usage.ru_stime)
}

fn prepare(path: &Path) -> io::Result<()> {
    let file = File::create(path)?;
    let zeros = vec![0u8; 1 << 20];
    for at in (0..FILE_BYTES).step_by(zeros.len()) {
        file.write_all_at(&zeros, at)?;
    }
    file.sync_all()
}

struct Round {
    cpu_per_commit: Duration,
    p50: Duration,
    p99: Duration,
}

fn run(way: Way, path: &Path, groups: usize, bytes: usize) -> io::Result<Round> {
    prepare(path)?;
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(way.flags())
        .open(path)?;
    let group = vec![b'x'; bytes];
    let mut aligned = Aligned::new(bytes + 2 * BLOCK);
    let buf = aligned.as_mut();
    let mut at = 0usize;
    let mut times = Vec::with_capacity(groups);
    let cpu = cpu_time();
    for _ in 0..groups {
        if at + bytes > FILE_BYTES as usize {
            break;
        }
        let started = Instant::now();
        match way {
            Way::WriteSync => {
                file.write_all_at(&group, at as u64)?;
                file.sync_data()?;
            }
            Way::DsyncWrite => {
                let iov = libc::iovec {
                    iov_base: group.as_ptr() as *mut libc::c_void,
                    iov_len: group.len(),
                };
                // SAFETY: the iovec points at `group`, alive and unchanged during the call.
                let n = unsafe {
                    libc::pwritev2(file.as_raw_fd(), &iov, 1, at as i64, libc::RWF_DSYNC)
                };
                if n != bytes as isize {
                    return Err(io::Error::last_os_error());
                }
            }
            Way::DirectSync | Way::DirectDsync => {
                // `buf` starts at the block that holds `at`, with that block's earlier bytes
                // kept from the groups before.
                let start = at / BLOCK * BLOCK;
                let end = (at + bytes).div_ceil(BLOCK) * BLOCK;
                buf[at - start..at - start + bytes].copy_from_slice(&group);
                file.write_all_at(&buf[..end - start], start as u64)?;
                if matches!(way, Way::DirectSync) {
                    file.sync_data()?;
                }
                let tail = (at + bytes) / BLOCK * BLOCK - start;
                buf.copy_within(tail..tail + BLOCK, 0);
            }
        }
        times.push(started.elapsed());
        at += bytes;
    }
    let cpu = cpu_time() - cpu;
    std::fs::remove_file(path)?;
    let commits = times.len().max(1);
    times.sort_unstable();
    Ok(Round {
        cpu_per_commit: cpu / commits as u32,
        p50: times.get(commits / 2).copied().unwrap_or_default(),
        p99: times.get(commits * 99 / 100).copied().unwrap_or_default(),
    })
}

fn main() -> io::Result<()> {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let Some(dir) = args.first() else {
        eprintln!("usage: commit_paths DIR [ROUNDS] [GROUPS] [BYTES]");
        std::process::exit(2);
    };
    let number = |i: usize, default: usize| {
        args.get(i)
            .map(|s| s.parse().expect("a whole number"))
            .unwrap_or(default)
    };
    let (rounds, groups, bytes) = (number(1, 5), number(2, 3000), number(3, 2500));
    let path = Path::new(dir).join("commit-paths.tmp");
    println!("round\tway\tCPU per commit (µs)\twall p50 (µs)\twall p99 (µs)");
    for round in 1..=rounds {
        for way in Way::ALL {
            let r = run(way, &path, groups, bytes)?;
            println!(
                "{round}\t{}\t{:.1}\t{:.0}\t{:.0}",
                way.name(),
                r.cpu_per_commit.as_secs_f64() * 1e6,
                r.p50.as_secs_f64() * 1e6,
                r.p99.as_secs_f64() * 1e6,
            );
        }
    }
    Ok(())
}
