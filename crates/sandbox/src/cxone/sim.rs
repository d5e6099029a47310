//! The simulated business unit: arrivals, routing, talk, ACW and the agents' own dispositions.
//!
//! It runs on the discrete-event engine ([`crate::engine`]), as the Genesys simulation does: [`Action`]s on
//! simulated time, each run at its own timestamp, every draw from the seeded engine RNG, and every contact's agent
//! plan drawn in full when it is routed, so API traffic changes what the BU shows but never the random stream.
//!
//! Contact lifecycle: `queued → routing → active → (disconnect) → acw → closed`, or `active → closed` on a skill
//! with `acwTypeId` 1. ACW (`Disconnected`, FinalState=False, agent `Unavailable`/`ACW` with `IsAcw`) ends with a
//! disposition (agent or API, subject to `disposition_ends_acw`), with the ACW timeout (`maxSecondsACW`, unless a
//! disposition is required), or with the agent going Available without one (skills that do not require one).
//! A transfer ends the agent's talk (that contact gets its own ACW) and creates a new contactId under the same
//! masterContactId on another skill.

use super::model::{Action, Bu, Contact, Dispo, Phase, Plan, Truth, Writer, ACW_STATE_NAME};
use super::AcwType;
use crate::engine::{add_secs, Engine, Simulation};
use crate::report::CodedBy;
use jiff::Timestamp;
use rand::Rng;

impl Simulation for Bu {
    type Action = Action;

    fn run(&mut self, at: Timestamp, action: Action) {
        match action {
            Action::Arrival => self.arrival(at),
            Action::Connect(c) => self.connect(c, at),
            Action::Disconnect(c) => self.disconnect(c, at),
            Action::AgentDisposition(c) => self.agent_disposition(c, at, false),
            Action::AgentSkip(c) => self.agent_skip(c, at),
            Action::AcwTimeout(c) => self.acw_timeout(c, at),
            Action::AgentFinish(c) => self.agent_finish(c, at),
            Action::AgentChange(c) => self.agent_disposition(c, at, true),
        }
    }

    fn engine_mut(&mut self) -> &mut Engine<Action> {
        &mut self.engine
    }

    fn arrival_rate(&self) -> f64 {
        self.center.arrival_rate_per_sec
    }

    /// A new contact (its own master) on a skill picked by weight.
    fn arrive(&mut self, at: Timestamp) {
        if let Some(s) = self.pick_skill(None) {
            let cid = self.new_contact(s, None, None, at);
            if !self.assign(cid, at) {
                self.skills[s].waiting.push_back(cid);
            }
        }
    }

    /// Starts arrivals only while the BU is enabled (its API answers either way).
    fn start_traffic(&mut self, now: Timestamp) {
        if self.enabled {
            self.engine.start_traffic(now);
        }
    }
}

impl Bu {
    /// A skill with members, by weight, other than `except`.
    fn pick_skill(&mut self, except: Option<usize>) -> Option<usize> {
        let weights: Vec<f64> = (self.skills.iter().enumerate())
            .map(|(i, s)| if Some(i) == except || s.members.is_empty() { 0.0 } else { s.weight })
            .collect();
        self.engine.pick_weighted(&weights)
    }

    fn new_contact(&mut self, skill: usize, master: Option<i64>, parent: Option<i64>, at: Timestamp) -> i64 {
        // Contact ids grow with gaps, as other BUs on the cluster take ids too.
        let gap = self.engine.rng.gen_range(1..40);
        self.next_contact_id += gap;
        let id = self.next_contact_id;
        let media = self.skills[skill].media;
        self.contacts.insert(
            id,
            Contact {
                id,
                master_id: master.unwrap_or(id),
                parent,
                skill,
                agent: None,
                media,
                phase: Phase::Queued,
                start: at,
                connected_at: None,
                acw_start: None,
                end: None,
                last_update: at,
                transfer_indicator: if parent.is_some() { 1 } else { 0 },
                disposition: None,
                truth: Truth::default(),
                plan: Plan::default(),
            },
        );
        id
    }

    fn idle_agent(&self, s: usize) -> Option<usize> {
        self.skills[s]
            .members
            .iter()
            .copied()
            .filter(|&a| {
                let ag = &self.agents[a];
                ag.routable && ag.contact.is_none() && ag.state == "Available"
            })
            .min_by_key(|&a| (self.agents[a].since, a))
    }

    /// Draws what the agent of a new contact on skill `s` will do.
    fn draw_plan(&mut self, s: usize) -> Plan {
        let b = self.center.agent;
        let n = self.skills[s].dispositions.len();
        // Draw everything unconditionally so each contact consumes the same randomness whatever its branch.
        let (at_disconnect, at_disconnect_delay) = self.engine.chance_after(b.at_disconnect, b.at_disconnect_delay);
        let (late, late_delay) = self.engine.chance_after(b.late, b.late_delay);
        let (change, change_delay) = self.engine.chance_after(b.change_after_api, b.change_delay);
        let skip = self.engine.draw(b.skip_delay);
        let give_in = self.engine.draw(b.give_in_delay);
        let finish = self.engine.draw(b.finish_delay);
        let transfer = self.engine.chance(self.center.transfer_probability);
        let pick1 = self.engine.rng.gen_range(0..n.max(1));
        let pick2 = self.engine.rng.gen_range(0..n.max(1));
        let accurate = self.engine.picks_true_outcome(self.center.agent_accuracy);
        let ds = &self.skills[s].dispositions;
        let d1 = ds.get(pick1).copied();
        let d2 = ds.get(pick2).copied();
        let code = match d1 {
            Some(d) if at_disconnect => Some((at_disconnect_delay, d)),
            Some(d) if late => Some((late_delay, d)),
            _ => None,
        };
        Plan {
            code,
            skip,
            give_in: (give_in, d1),
            finish,
            change_after_api: if change { d2.map(|d| (change_delay, d)) } else { None },
            transfer,
            // `d1` stands in until the talk time settles the true outcome (`Plan::settle_outcome`); its draw picks
            // the other disposition an inaccurate agent chooses.
            accurate,
            other_pick: pick1,
            true_code: None,
            agent_pick: None,
        }
    }

    /// Routes contact `cid` to an idle agent of its skill; `false` if nobody is free.
    fn assign(&mut self, cid: i64, at: Timestamp) -> bool {
        let Some(s) = self.contacts.get(&cid).map(|c| c.skill) else { return false };
        let Some(a) = self.idle_agent(s) else { return false };
        let plan = self.draw_plan(s);
        let alert = self.engine.draw(self.center.alert_time);
        let Some(c) = self.contacts.get_mut(&cid) else { return false };
        c.agent = Some(a);
        c.plan = plan;
        c.phase = Phase::Routing;
        c.last_update = at;
        let ag = &mut self.agents[a];
        ag.contact = Some(cid);
        ag.state = "InboundContact";
        ag.since = at;
        ag.last_update = at;
        self.emit_agent_state(a, at);
        self.emit_contact(cid);
        self.engine.schedule(add_secs(at, alert), Action::Connect(cid));
        true
    }

    fn connect(&mut self, cid: i64, at: Timestamp) {
        let talk = self.engine.draw(self.center.talk_time);
        let Some(c) = self.contacts.get_mut(&cid) else { return };
        if c.phase != Phase::Routing {
            return;
        }
        c.phase = Phase::Active;
        c.connected_at = Some(at);
        c.last_update = at;
        self.emit_contact(cid);
        self.engine.schedule(add_secs(at, talk), Action::Disconnect(cid));
    }

    pub(crate) fn disconnect(&mut self, cid: i64, at: Timestamp) {
        let Some(c) = self.contacts.get(&cid) else { return };
        if c.phase != Phase::Active {
            return;
        }
        let (s, transfer, master) = (c.skill, c.plan.transfer, c.master_id);
        if transfer {
            // The customer goes to another skill as a new contact (new contactId, same master).
            if let Some(t) = self.pick_skill(Some(s)) {
                let new = self.new_contact(t, Some(master), Some(cid), at);
                if !self.assign(new, at) {
                    self.skills[t].waiting.push_back(new);
                }
            }
        }
        let skill = &self.skills[s];
        let (has_acw, timeout, acw_type, require) =
            (skill.has_acw(), skill.acw_timeout(), skill.acw_type, skill.require_disposition);
        let Some(c) = self.contacts.get_mut(&cid) else { return };
        let talk = c.connected_at.map_or(0.0, |t| at.duration_since(t).as_secs_f64());
        c.plan.settle_outcome(&skill.dispositions, talk);
        let plan = c.plan.clone();
        c.last_update = at;
        if !has_acw {
            c.phase = Phase::Closed;
            c.end = Some(at);
            c.truth.closed_at = Some(at);
            c.truth.coded_by = Some(CodedBy::None);
            let agent = c.agent;
            self.emit_contact(cid);
            if let Some(a) = agent {
                self.release_agent(a, at);
            }
            return;
        }
        c.phase = Phase::Acw;
        c.acw_start = Some(at);
        c.truth.deadline = timeout.map(|t| add_secs(at, t as f64));
        let agent = c.agent;
        self.emit_contact(cid);
        if let Some(a) = agent {
            let ag = &mut self.agents[a];
            ag.state = "Unavailable";
            ag.out_reason = ACW_STATE_NAME.into();
            ag.is_acw = true;
            ag.acw_timeout = Some(timeout.unwrap_or(0));
            ag.since = at;
            ag.last_update = at;
            self.emit_agent_state(a, at);
        }
        if let Some(t) = timeout {
            self.engine.schedule(add_secs(at, t as f64), Action::AcwTimeout(cid));
        }
        match plan.code {
            Some((d, _)) => self.engine.schedule(add_secs(at, d), Action::AgentDisposition(cid)),
            None if require => self.engine.schedule(add_secs(at, plan.give_in.0), Action::AgentDisposition(cid)),
            // Automatic wrap-up has no early exit; other skills let the agent go Available without a disposition.
            None if acw_type == AcwType::Disposition => {
                self.engine.schedule(add_secs(at, plan.skip), Action::AgentSkip(cid))
            }
            None => {}
        }
    }

    /// The agent's own disposition (or its change after an API write), saved with "Save & Close".
    fn agent_disposition(&mut self, cid: i64, at: Timestamp, change: bool) {
        let Some(c) = self.contacts.get(&cid) else { return };
        if c.phase != Phase::Acw {
            return;
        }
        let d = if change {
            if !c.disposition.as_ref().is_some_and(|d| d.by == Writer::Api) {
                return;
            }
            c.plan.change_after_api.map(|x| x.1)
        } else {
            if c.disposition.is_some() {
                return;
            }
            c.plan.code.map(|x| x.1).or(c.plan.give_in.1)
        };
        let Some(d) = d else { return };
        let by_agent = c.agent.map(|a| self.agents[a].id);
        let Some(c) = self.contacts.get_mut(&cid) else { return };
        if change {
            c.truth.agent_changed_after_api = true;
        }
        c.disposition =
            Some(Dispo { primary: d, secondary: None, notes: String::new(), by: Writer::Agent, by_agent, at });
        c.truth.coded_by = Some(CodedBy::Agent);
        c.last_update = at;
        self.close_acw(cid, at);
    }

    fn agent_skip(&mut self, cid: i64, at: Timestamp) {
        let Some(c) = self.contacts.get_mut(&cid) else { return };
        if c.phase != Phase::Acw || c.disposition.is_some() {
            return;
        }
        c.truth.coded_by = Some(CodedBy::Skipped);
        self.close_acw(cid, at);
    }

    fn acw_timeout(&mut self, cid: i64, at: Timestamp) {
        let Some(c) = self.contacts.get_mut(&cid) else { return };
        if c.phase != Phase::Acw {
            return;
        }
        if c.disposition.is_none() {
            c.truth.coded_by = Some(CodedBy::SystemTimeout);
        }
        self.close_acw(cid, at);
    }

    /// With `keepsAcw`, the agent leaves ACW some time after an API disposition.
    fn agent_finish(&mut self, cid: i64, at: Timestamp) {
        self.close_acw(cid, at);
    }

    /// Agent `a` became idle: take the next waiting contact of one of its skills.
    pub(crate) fn on_agent_idle(&mut self, a: usize, at: Timestamp) {
        let skills = self.agents[a].skills.clone();
        for s in skills {
            if let Some(cid) = self.skills[s].waiting.pop_front() {
                if !self.assign(cid, at) {
                    self.skills[s].waiting.push_front(cid);
                }
                return;
            }
        }
    }

    /// Creates `n` contacts already in ACW (disconnected within the last few seconds), over the skills with ACW.
    pub fn preload(&mut self, n: usize, now: Timestamp) {
        let skills: Vec<usize> = (0..self.skills.len())
            .filter(|&s| self.skills[s].has_acw() && !self.skills[s].members.is_empty())
            .collect();
        if skills.is_empty() {
            return;
        }
        for i in 0..n {
            let s = skills[i % skills.len()];
            let ago = self.engine.rng.gen_range(0.0..5.0);
            let acw_at = now.checked_sub(jiff::SignedDuration::from_secs_f64(ago)).unwrap_or(now);
            let start = acw_at.checked_sub(jiff::SignedDuration::from_secs(90)).unwrap_or(acw_at);
            let cid = self.new_contact(s, None, None, start);
            if !self.assign(cid, start) {
                // Everyone is busy: drop the contact rather than double-booking an agent.
                self.contacts.remove(&cid);
                continue;
            }
            if let Some(c) = self.contacts.get_mut(&cid) {
                c.plan.transfer = false;
            }
            self.connect(cid, start);
            // The scheduled disconnect of `connect` finds the contact already in ACW and does nothing.
            self.disconnect(cid, acw_at);
        }
    }
}
