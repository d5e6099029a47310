//! The hidden true outcome of a simulated conversation, and the code its agent picks.
//!
//! Each agent leg has one of its queue's (or skill's) codes as its true outcome, set from what a rule can see of
//! the leg: how long the agent was connected (Genesys reports it as the leg's talk time, `talk_ms`). The queue's
//! codes are read in their configured order:
//!
//! | connected | true outcome |
//! |---|---|
//! | under [`SHORT_TALK_SECS`] | the queue's last code (e.g. `Wrong number` on Sales and Support) |
//! | from [`LONG_TALK_SECS`] | its second code (e.g. `No sale`, `Escalated`) |
//! | between | its first code (e.g. `Sale completed`, `Issue resolved`) |
//!
//! The agent picks the true outcome with the configured accuracy (`agent_accuracy`), otherwise one of the queue's
//! other codes, evenly. So an automatic code that follows the same facts agrees with agents about as often as
//! agents are right, and one that follows fewer facts (the queue alone) agrees less.

/// Connected for less than this (seconds): the queue's last code.
pub const SHORT_TALK_SECS: f64 = 60.0;
/// Connected for this long or longer (seconds): the queue's second code.
pub const LONG_TALK_SECS: f64 = 300.0;

/// The index, among `codes` codes, of the true outcome of a leg connected for `talk_secs`; `None` without codes.
pub fn true_outcome(codes: usize, talk_secs: f64) -> Option<usize> {
    let last = codes.checked_sub(1)?;
    Some(if talk_secs < SHORT_TALK_SECS {
        last
    } else if talk_secs >= LONG_TALK_SECS {
        1.min(last)
    } else {
        0
    })
}

/// The index of the agent's pick: the true outcome when `accurate`, else another of the `codes` codes, chosen by
/// `other` (any draw; reduced modulo the number of other codes).
pub fn agent_pick(codes: usize, truth: usize, accurate: bool, other: usize) -> usize {
    if accurate || codes < 2 {
        return truth;
    }
    let i = other % (codes - 1);
    if i >= truth {
        i + 1
    } else {
        i
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_true_outcome_follows_the_talk_time() {
        assert_eq!(true_outcome(4, 20.0), Some(3));
        assert_eq!(true_outcome(4, 59.9), Some(3));
        assert_eq!(true_outcome(4, 60.0), Some(0));
        assert_eq!(true_outcome(4, 299.0), Some(0));
        assert_eq!(true_outcome(4, 300.0), Some(1));
        assert_eq!(true_outcome(1, 900.0), Some(0));
        assert_eq!(true_outcome(0, 10.0), None);
    }

    #[test]
    fn an_inaccurate_agent_picks_every_other_code_and_never_the_true_one() {
        assert_eq!(agent_pick(4, 2, true, 7), 2);
        let picks: Vec<usize> = (0..6).map(|o| agent_pick(4, 2, false, o)).collect();
        assert_eq!(picks, vec![0, 1, 3, 0, 1, 3]);
        assert_eq!(agent_pick(1, 0, false, 5), 0, "a queue with one code has nothing else to pick");
    }
}
