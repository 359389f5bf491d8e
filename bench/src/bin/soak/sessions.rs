//! The soak's WebSocket clients: each drops and resumes at random while the run goes on,
//! then holds on until it has caught up, then closes.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use nextup_bench::session::Session;
use rand::rngs::SmallRng;
use rand::{RngExt, make_rng};
use tokio::sync::watch;
use tokio::task::JoinHandle;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Drop and resume at random.
    Run,
    /// Stay connected (reconnect at once if the server closes), to catch up.
    Hold,
    /// Close and end.
    Stop,
}

#[derive(Debug, Clone, Copy)]
pub struct SessionTiming {
    pub max_connected: Duration,
    pub max_offline: Duration,
}

pub struct SessionHandle {
    pub label: String,
    /// The session's last seq (`u64::MAX` until its first snapshot).
    pub progress: Arc<AtomicU64>,
    pub task: JoinHandle<Session>,
}

fn random_duration(rng: &mut SmallRng, max: Duration) -> Duration {
    if max.is_zero() {
        return Duration::ZERO;
    }
    Duration::from_secs_f64(rng.random_range(0.0..max.as_secs_f64()))
}

/// Sleeps for `duration`, or less when the phase changes; `false` when it became `Stop`.
async fn pause(duration: Duration, phase: &mut watch::Receiver<Phase>) -> bool {
    let sleep = tokio::time::sleep(duration);
    tokio::pin!(sleep);
    loop {
        tokio::select! {
            _ = &mut sleep => return *phase.borrow() != Phase::Stop,
            changed = phase.changed() => {
                let now = *phase.borrow();
                if changed.is_err() || now == Phase::Stop {
                    return false;
                }
                if now == Phase::Hold {
                    return true;
                }
            }
        }
    }
}

pub async fn session_task(
    mut session: Session,
    timing: SessionTiming,
    mut phase: watch::Receiver<Phase>,
    progress: Arc<AtomicU64>,
) -> Session {
    let mut rng: SmallRng = make_rng();
    let mut failed_handshakes = 0u32;
    let far = Duration::from_secs(86_400);
    loop {
        if *phase.borrow() == Phase::Stop {
            break;
        }
        if session.connect().await.is_err() {
            // Backoff with full jitter, capped at 2 s (the outage lasts ~20 s).
            failed_handshakes = (failed_handshakes + 1).min(5);
            let cap = Duration::from_millis(100 << failed_handshakes).min(Duration::from_secs(2));
            if !pause(random_duration(&mut rng, cap), &mut phase).await {
                break;
            }
            continue;
        }
        failed_handshakes = 0;
        let running = *phase.borrow() == Phase::Run;
        let stay = if running {
            Duration::from_millis(500) + random_duration(&mut rng, timing.max_connected)
        } else {
            far
        };
        let sleep = tokio::time::sleep(stay);
        tokio::pin!(sleep);
        let mut ping = tokio::time::interval_at(
            (Instant::now() + Duration::from_secs(5)).into(),
            Duration::from_secs(5),
        );
        let voluntary = loop {
            tokio::select! {
                received = session.recv() => match received {
                    Ok(_) => {
                        if let Some(seq) = session.last_seq() {
                            progress.store(seq, Ordering::Relaxed);
                        }
                    }
                    Err(_) => break false,
                },
                _ = &mut sleep => break true,
                _ = ping.tick() => {
                    if session.ping().await.is_err() {
                        break false;
                    }
                }
                changed = phase.changed() => {
                    let now = *phase.borrow();
                    if changed.is_err() || now == Phase::Stop {
                        session.disconnect(true).await;
                        return session;
                    }
                    if now == Phase::Hold {
                        sleep.as_mut().reset((Instant::now() + far).into());
                    }
                }
            }
        };
        if voluntary {
            // Mostly a clean close; sometimes the client just vanishes.
            let graceful = rng.random_bool(0.7);
            session.disconnect(graceful).await;
        }
        let offline = if *phase.borrow() == Phase::Run {
            random_duration(&mut rng, timing.max_offline)
        } else {
            Duration::from_millis(100)
        };
        if !pause(offline, &mut phase).await {
            break;
        }
    }
    session.disconnect(true).await;
    session
}
