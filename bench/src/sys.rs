//! What the tools need from the operating system (Linux): a clock shared by processes, the
//! open-files limit, CPU time, and the machine facts a report starts with.

use std::io;
use std::time::Duration;

use serde::Serialize;

/// `CLOCK_MONOTONIC` in nanoseconds. Unlike `Instant`, its values can be compared between
/// processes of one machine, so a child process can time frames against requests the parent
/// sent.
pub fn mono_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid timespec, and CLOCK_MONOTONIC always exists on Linux.
    let rc = unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    debug_assert_eq!(rc, 0);
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// The open-files limit (`RLIMIT_NOFILE`) of this process.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct FileLimit {
    /// The soft limit before [`raise_file_limit`].
    pub was: u64,
    pub soft: u64,
    pub hard: u64,
}

fn get_nofile() -> io::Result<libc::rlimit> {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: `limit` is a valid rlimit to write into.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(limit)
}

fn set_nofile(soft: u64, hard: u64) -> io::Result<()> {
    let limit = libc::rlimit {
        rlim_cur: soft as libc::rlim_t,
        rlim_max: hard as libc::rlim_t,
    };
    // SAFETY: a plain value passed by reference.
    if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &limit) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Raises the soft open-files limit to the hard one. When `wanted` is above the hard limit
/// it also tries to raise the hard limit (which needs `CAP_SYS_RESOURCE`; without it the
/// hard limit stays). Child processes started afterwards inherit the result.
pub fn raise_file_limit(wanted: u64) -> io::Result<FileLimit> {
    let before = get_nofile()?;
    let was = before.rlim_cur as u64;
    let mut hard = before.rlim_max as u64;
    if wanted > hard {
        let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
            .ok()
            .and_then(|s| s.trim().parse::<u64>().ok())
            .unwrap_or(wanted);
        let target = wanted.min(ceiling);
        if target > hard && set_nofile(target, target).is_ok() {
            hard = target;
        }
    }
    if (get_nofile()?.rlim_cur as u64) < hard {
        set_nofile(hard, hard)?;
    }
    let now = get_nofile()?;
    Ok(FileLimit {
        was,
        soft: now.rlim_cur as u64,
        hard: now.rlim_max as u64,
    })
}

/// The soft "Max open files" of another process, from `/proc/PID/limits`.
pub fn file_limit_of(pid: u32) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/limits")).ok()?;
    let line = text.lines().find(|l| l.starts_with("Max open files"))?;
    let soft = line.split_whitespace().nth(3)?;
    if soft == "unlimited" {
        return Some(u64::MAX);
    }
    soft.parse().ok()
}

/// User + system CPU time a process has used so far, from `/proc/PID/stat`.
pub fn cpu_time(pid: u32) -> Option<Duration> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name may contain spaces: fields are counted after its closing parenthesis.
    let rest = &text[text.rfind(')')? + 2..];
    let mut fields = rest.split_whitespace();
    // After the name: state(3) … utime(14) stime(15), so utime is the 12th here (index 11).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // SAFETY: sysconf has no preconditions.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    let ticks = if ticks > 0 { ticks as u64 } else { 100 };
    Some(Duration::from_secs_f64(
        (utime + stime) as f64 / ticks as f64,
    ))
}

/// User + system CPU time used so far by every process whose command name is `name` (e.g.
/// the backends of a local `postgres`), or `None` when there is none.
pub fn cpu_time_of_command(name: &str) -> Option<Duration> {
    let mut total = Duration::ZERO;
    let mut found = false;
    for entry in std::fs::read_dir("/proc").ok()?.flatten() {
        let Some(pid) = entry
            .file_name()
            .to_str()
            .and_then(|s| s.parse::<u32>().ok())
        else {
            continue;
        };
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
        if comm.trim_end() == name
            && let Some(cpu) = cpu_time(pid)
        {
            total += cpu;
            found = true;
        }
    }
    found.then_some(total)
}

/// The local ephemeral port range (`net.ipv4.ip_local_port_range`), e.g. (32768, 60999).
pub fn ephemeral_ports() -> (u16, u16) {
    std::fs::read_to_string("/proc/sys/net/ipv4/ip_local_port_range")
        .ok()
        .and_then(|s| {
            let mut parts = s.split_whitespace().map(|p| p.parse::<u16>().ok());
            Some((parts.next()??, parts.next()??))
        })
        .unwrap_or((32768, 60999))
}

/// Facts about the machine that are cheap to read, for the head of a report.
#[derive(Debug, Clone, Serialize)]
pub struct Machine {
    pub cores: usize,
    pub cpu_model: Option<String>,
    pub memory_mib: Option<u64>,
    pub kernel: Option<String>,
    pub ephemeral_ports: (u16, u16),
}

impl Machine {
    pub fn read() -> Machine {
        let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
        Machine {
            cores: std::thread::available_parallelism().map_or(1, usize::from),
            cpu_model: cpuinfo
                .lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, v)| v.trim().to_owned()),
            memory_mib: meminfo
                .lines()
                .find_map(|l| l.strip_prefix("MemTotal:"))
                .and_then(|v| v.split_whitespace().next()?.parse::<u64>().ok())
                .map(|kib| kib / 1024),
            kernel: std::fs::read_to_string("/proc/sys/kernel/osrelease")
                .ok()
                .map(|s| s.trim().to_owned()),
            ephemeral_ports: ephemeral_ports(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_monotonic_clock_moves_forward() {
        let a = mono_ns();
        std::thread::sleep(Duration::from_millis(2));
        let b = mono_ns();
        assert!(b >= a + 1_000_000, "{a} then {b}");
    }

    #[test]
    fn limits_and_cpu_of_this_process_are_read() {
        let limit = raise_file_limit(0).unwrap();
        assert_eq!(limit.soft, limit.hard);
        assert_eq!(file_limit_of(std::process::id()), Some(limit.soft));
        assert!(cpu_time(std::process::id()).is_some());
        let me = std::fs::read_to_string("/proc/self/comm").unwrap();
        assert!(cpu_time_of_command(me.trim_end()).is_some());
        assert_eq!(cpu_time_of_command("no such command name"), None);
        let (low, high) = ephemeral_ports();
        assert!(low < high);
    }
}
