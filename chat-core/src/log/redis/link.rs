//! The link to Redis as the log sees it: the round trip measured on every answered call (an
//! average that follows it), the time a call is given that follows from it between a floor and
//! a ceiling, which lanes must dial anew because another lane found the link broken, and
//! whether the link is up, for the operator's log.

use std::time::{Duration, Instant};

use super::{Answer, CallId, Lane, Level, RedisLog, Reply, Settings};

/// A call is given this many round trips, between the floor and the ceiling.
const ROUND_TRIPS: u32 = 4;

/// The lane's index in [`Lane::ALL`].
fn index(lane: Lane) -> usize {
    match lane {
        Lane::Propose => 0,
        Lane::Lease => 1,
        Lane::Read => 2,
    }
}

/// The link's state.
#[derive(Debug)]
pub(super) struct Link {
    /// The smoothed round trip (each sample counts for an eighth, as TCP's SRTT), once measured.
    rtt: Option<Duration>,
    /// The call in flight on each lane: its id, when it was sent, and whether its answer
    /// measures the round trip (a blocking read waits on purpose).
    sent: [Option<(CallId, Instant, bool)>; 3],
    /// Lanes whose next call goes on a new connection: another lane found the link broken.
    redial: [bool; 3],
    /// When the link was found broken; `None` while it answers.
    lost_at: Option<Instant>,
    /// The round trip asks more than the ceiling gives: this node cannot meet its deadlines.
    too_far: bool,
}

impl Link {
    pub(super) fn new() -> Self {
        Self {
            rtt: None,
            sent: [None; 3],
            redial: [false; 3],
            lost_at: None,
            too_far: false,
        }
    }

    /// The smoothed round trip, once measured.
    pub(super) fn rtt(&self) -> Option<Duration> {
        self.rtt
    }

    /// Whether the link answers (as far as the last call knows).
    pub(super) fn up(&self) -> bool {
        self.lost_at.is_none()
    }

    /// Whether the round trip is past what the ceiling allows.
    pub(super) fn too_far(&self) -> bool {
        self.too_far
    }

    /// How long a call may take before it counts as failed: a few round trips, between the
    /// floor and the ceiling.
    pub(super) fn timeout(&self, settings: &Settings) -> Duration {
        let want = self.rtt.unwrap_or_default() * ROUND_TRIPS;
        want.clamp(settings.deadline_min, settings.deadline_max)
    }

    /// Whether `lane`'s next call must dial anew (and forgets it: the call does).
    pub(super) fn take_redial(&mut self, lane: Lane) -> bool {
        std::mem::take(&mut self.redial[index(lane)])
    }

    /// Whether `lane` is to dial anew.
    pub(super) fn redial_due(&self, lane: Lane) -> bool {
        self.redial[index(lane)]
    }

    pub(super) fn sent(&mut self, lane: Lane, id: CallId, now: Instant, measures: bool) {
        self.sent[index(lane)] = Some((id, now, measures));
    }

    fn sample(&mut self, rtt: Duration) {
        self.rtt = Some(match self.rtt {
            None => rtt,
            Some(avg) => (avg * 7 + rtt) / 8,
        });
    }
}

impl RedisLog {
    /// Learns from the answer to call `id`: a round trip measured, or the link broken (the other
    /// lanes dial anew) or back.
    pub(super) fn link_answered(&mut self, id: CallId, answer: &Answer) {
        let Some(lane) = self
            .link
            .sent
            .iter()
            .position(|s| s.is_some_and(|s| s.0 == id))
        else {
            return;
        };
        let Some((_, sent, measures)) = self.link.sent[lane].take() else {
            return;
        };
        let broken = match answer {
            Answer::Reply(Reply::Error(error)) => Some(Some(error.clone())),
            Answer::Unreachable => Some(None),
            Answer::Reply(_) => None,
        };
        match broken {
            Some(error) => {
                if error.is_some() {
                    // This lane's connection is dropped with the call; the others may be as
                    // dead (Redis restarted): they dial anew before they are needed.
                    for (other, redial) in self.link.redial.iter_mut().enumerate() {
                        *redial |= other != lane;
                    }
                }
                self.link_lost(error);
            }
            None => {
                if measures {
                    self.link.sample(self.now.saturating_duration_since(sent));
                    self.check_reach();
                }
                if let Some(at) = self.link.lost_at.take() {
                    let secs = self.now.saturating_duration_since(at).as_secs_f64();
                    self.note(Level::Info, format!("Redis link back after {secs:.1} s"));
                }
            }
        }
    }

    fn link_lost(&mut self, error: Option<String>) {
        if self.link.lost_at.is_some() || !self.entered {
            return;
        }
        self.link.lost_at = Some(self.now);
        let why = error.unwrap_or_else(|| "Redis is unreachable".into());
        self.note(Level::Warn, format!("Redis link lost: {why}"));
    }

    /// Says so when the round trip crosses what the ceiling allows, either way.
    fn check_reach(&mut self) {
        let rtt = self.link.rtt.unwrap_or_default();
        let too_far = rtt * ROUND_TRIPS > self.settings.deadline_max;
        if too_far == self.link.too_far {
            return;
        }
        self.link.too_far = too_far;
        let (ms, max) = (rtt.as_millis(), self.settings.deadline_max);
        if too_far {
            let text = format!(
                "Redis is {ms} ms away, more than this node can wait for ({max:?}, \
                 --redis-deadline-max, allows {} ms): not ready; joins and chats may be \
                 declined as unavailable",
                (max / ROUND_TRIPS).as_millis()
            );
            self.note(Level::Warn, text);
        } else {
            self.note(
                Level::Info,
                format!("Redis is {ms} ms away again: within {max:?}; ready"),
            );
        }
    }
}
