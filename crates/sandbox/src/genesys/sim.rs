//! The simulated contact center: arrivals, agent legs and their ACW windows, and the agents' own coding.
//!
//! It runs on the discrete-event engine ([`crate::engine`]): [`Action`]s scheduled on simulated time, each run at
//! its own timestamp, every draw from the seeded engine RNG. Each leg draws its agent's whole plan (provisional
//! code, final code or skip, change after an API write) when it is created, so API traffic changes what the
//! platform *shows* but never the random stream.
//!
//! Leg lifecycle (agent participant):
//! `alerting → connected → (disconnect) → ACW pending → done` (coded by agent / API / system timeout, or skipped),
//! or `connected → done` without ACW on an AGENT_REQUESTED queue when the agent does not ask for it. Transfers end
//! one agent leg with `transfer` and route the customer to a new agent leg; consults add a short second agent leg.

use crate::config::AcwMode;
use crate::engine::{add_secs, Engine, Simulation};
use crate::genesys::model::{
    epoch_ms, Action, AcwState, Conversation, FinalAction, Media, Org, Participant, Phase, Purpose, Wrapup, Writer,
    SYSTEM_TIMEOUT_CODE_ID, SYSTEM_TIMEOUT_CODE_NAME,
};
use crate::report::CodedBy;
use jiff::Timestamp;
use rand::Rng;
use serde_json::json;

impl Simulation for Org {
    type Action = Action;

    /// Runs `action`, then publishes the conversations it touched or created to the notification channels.
    fn run(&mut self, at: Timestamp, action: Action) {
        let created = self.conversation_order.len();
        let touched = match &action {
            Action::Arrival => None,
            Action::Connect { cid, .. }
            | Action::Provisional { cid, .. }
            | Action::Consult { cid, .. }
            | Action::Disconnect { cid, .. }
            | Action::AgentFinal { cid, .. }
            | Action::AgentSkip { cid, .. }
            | Action::Timeout { cid, .. }
            | Action::AgentChange { cid, .. } => Some(cid.clone()),
        };
        self.run_action(at, action);
        if self.hub.active() {
            if let Some(cid) = touched {
                self.notify_conversation(&cid);
            }
            if self.conversation_order.len() > created {
                if let Some(cid) = self.conversation_order.last().cloned() {
                    self.notify_conversation(&cid);
                }
            }
        }
    }

    fn engine_mut(&mut self) -> &mut Engine<Action> {
        &mut self.engine
    }

    fn arrival_rate(&self) -> f64 {
        self.center.arrival_rate_per_sec
    }

    /// A new conversation on a queue and of a media picked by weight.
    fn arrive(&mut self, at: Timestamp) {
        if let Some(q) = self.pick_queue() {
            let media = self.pick_media();
            let cid = self.new_conversation(q, media, at);
            if !self.assign(&cid, q, at, None) {
                self.queues[q].waiting.push_back(cid);
            }
        }
    }
}

impl Org {
    fn run_action(&mut self, at: Timestamp, action: Action) {
        match action {
            Action::Arrival => self.arrival(at),
            Action::Connect { cid, pid } => self.connect(&cid, &pid, at),
            Action::Provisional { cid, pid } => self.agent_provisional(&cid, &pid, at),
            Action::Consult { cid, pid } => self.consult(&cid, &pid, at),
            Action::Disconnect { cid, pid } => self.disconnect(&cid, &pid, at),
            Action::AgentFinal { cid, pid } => self.agent_final(&cid, &pid, at),
            Action::AgentSkip { cid, pid } => self.agent_skip(&cid, &pid, at),
            Action::Timeout { cid, pid } => self.timeout(&cid, &pid, at),
            Action::AgentChange { cid, pid } => self.agent_change(&cid, &pid, at),
        }
    }

    fn pick_queue(&mut self) -> Option<usize> {
        let weights: Vec<f64> = self.queues.iter().map(|q| q.weight).collect();
        self.engine.pick_weighted(&weights)
    }

    fn pick_media(&mut self) -> Media {
        let m = self.center.media_mix;
        let media = [Media::Calls, Media::Messages, Media::Emails, Media::Callbacks];
        let weights = [m.calls, m.messages, m.emails, m.callbacks].map(|w| w.max(0.0));
        self.engine.pick_weighted(&weights).map_or(Media::Calls, |i| media[i])
    }

    /// Creates a conversation (customer + ACD participants) on a queue; returns its id.
    fn new_conversation(&mut self, q: usize, media: Media, at: Timestamp) -> String {
        let cid = self.engine.new_id();
        let mut customer = Participant::new(self.engine.new_id(), self.engine.new_id(), Purpose::Customer, at);
        customer.phase = Phase::Connected;
        customer.connected_at = Some(at);
        customer.queue = Some(q);
        customer.name = format!("Customer {}", &cid[..8]);
        let mut acd = Participant::new(self.engine.new_id(), self.engine.new_id(), Purpose::Acd, at);
        acd.phase = Phase::Connected;
        acd.connected_at = Some(at);
        acd.queue = Some(q);
        acd.name = self.queues[q].name.clone();
        let direction = if media == Media::Callbacks { "outbound" } else { "inbound" };
        self.conversations.insert(
            cid.clone(),
            Conversation {
                id: cid.clone(),
                media,
                direction,
                start: at,
                end: None,
                queue: q,
                participants: vec![customer, acd],
            },
        );
        self.conversation_order.push(cid.clone());
        cid
    }

    /// The idle member of queue `q` that has been idle longest.
    fn idle_agent(&self, q: usize) -> Option<usize> {
        self.queues[q]
            .members
            .iter()
            .copied()
            .filter(|&u| self.users[u].busy == 0)
            .min_by_key(|&u| (self.users[u].status_since, u))
    }

    /// Routes conversation `cid` to an idle agent of queue `q`; `false` if nobody is free.
    fn assign(&mut self, cid: &str, q: usize, at: Timestamp, consult_of: Option<String>) -> bool {
        let Some(u) = self.idle_agent(q) else {
            return false;
        };
        let plan = self.draw_plan(q);
        let alert = self.engine.draw(self.center.alert_time);
        let mut p = self.agent_leg(u, q, plan, at);
        let pid = p.id.clone();
        p.consult_participant_id = consult_of;
        let Some(conv) = self.conversations.get_mut(cid) else {
            return false;
        };
        conv.participants.push(p);
        self.engine.schedule(add_secs(at, alert), Action::Connect { cid: cid.to_string(), pid });
        true
    }

    /// Draws what the agent of a new leg on queue `q` will do.
    fn draw_plan(&mut self, q: usize) -> crate::genesys::model::AgentPlan {
        let b = self.center.agent;
        let mode = self.queues[q].mode;
        let n = self.queues[q].codes.len();
        let pick = |org: &mut Org| -> Option<(usize, String)> {
            if n == 0 {
                None
            } else {
                let i = org.engine.rng.gen_range(0..n);
                Some((i, org.queues[q].codes[i].clone()))
            }
        };
        // Draw everything unconditionally so one leg consumes the same amount of randomness whatever its branch.
        let (provisional, provisional_delay) = self.engine.chance_after(b.provisional_during, b.provisional_delay);
        let (at_disconnect, at_disconnect_delay) = self.engine.chance_after(b.at_disconnect, b.at_disconnect_delay);
        let (late, late_delay) = self.engine.chance_after(b.late, b.late_delay);
        let (change, change_delay) = self.engine.chance_after(b.change_after_api, b.change_delay);
        let skip_delay = self.engine.draw(b.skip_delay);
        let give_in_delay = self.engine.draw(b.give_in_delay);
        let requests_acw = self.engine.chance(b.requests_acw);
        let code = pick(self);
        let change_code = pick(self).map(|(_, c)| c);
        let accurate = self.engine.picks_true_outcome(self.center.agent_accuracy);

        // The code drawn here stands in until the agent's connected time settles the true outcome and the agent's
        // pick (`AgentPlan::settle_outcome`); its draw picks the other code an inaccurate agent chooses.
        let other_pick = code.as_ref().map_or(0, |(i, _)| *i);
        let mut plan = crate::genesys::model::AgentPlan { requests_acw, accurate, other_pick, ..Default::default() };
        let Some((_, code)) = code else { return plan };
        if provisional {
            plan.provisional = Some((provisional_delay, code.clone()));
        }
        plan.final_action = if at_disconnect {
            FinalAction::Code(at_disconnect_delay, code)
        } else if provisional || late {
            FinalAction::Code(late_delay, code)
        } else {
            match mode {
                AcwMode::Optional => FinalAction::Skip(skip_delay),
                AcwMode::Mandatory => FinalAction::Code(give_in_delay, code),
                _ => FinalAction::Nothing,
            }
        };
        if change {
            plan.change_after_api = change_code.map(|c| (change_delay, c));
        }
        plan
    }

    fn connect(&mut self, cid: &str, pid: &str, at: Timestamp) {
        let talk = self.engine.draw(self.center.talk_time);
        let hold_p = self.center.hold_probability;
        let held = if self.engine.chance(hold_p) { self.engine.draw(self.center.hold_time) } else { 0.0 };
        let consult_p = self.center.consult_probability;
        let consult = self.engine.chance(consult_p);
        let Some(conv) = self.conversations.get_mut(cid) else {
            return;
        };
        let Some(p) = conv.participant_mut(pid) else {
            return;
        };
        if p.phase != Phase::Alerting {
            return;
        }
        p.phase = Phase::Connected;
        p.connected_at = Some(at);
        let is_consult = p.consult_participant_id.is_some();
        let talk = if is_consult { talk / 4.0 } else { talk };
        p.held_ms = (held.min(talk) * 1000.0) as u64;
        // Connected from now until the disconnect below: the talk time the leg reports.
        if let Some(q) = p.queue {
            p.plan.settle_outcome(&self.queues[q].codes, talk + held);
        }
        let provisional = p.plan.provisional.clone();
        let user_id = p.user_id.clone();
        // The ACD participant leaves when an agent answers.
        let mut acd_end = None;
        if let Some(acd) = conv.participants.iter_mut().find(|x| x.purpose == Purpose::Acd && x.end.is_none()) {
            acd.end = Some(at);
            acd.phase = Phase::Done;
            acd.disconnect_type = Some("transfer");
            acd_end = Some((acd.id.clone(), acd.comm_id.clone(), acd.queue, acd.start));
        }
        let media = conv.media;
        let direction = conv.direction;
        if let Some((apid, acomm, q, start)) = acd_end {
            let queue_id = q.and_then(|q| self.queues.get(q)).map(|q| q.id.clone());
            let body = json!({
                "eventTime": epoch_ms(at), "conversationId": cid, "participantId": apid, "sessionId": acomm,
                "disconnectType": "TRANSFER", "mediaType": media.event_name(), "provider": "Edge",
                "direction": direction.to_uppercase(), "queueId": queue_id, "divisionId": self.division_id,
                "acdOutcome": "ANSWERED", "answeredUserId": user_id,
                "connectedDurationMs": (at.as_millisecond() - start.as_millisecond()).max(0),
            });
            self.emit("acd.end", cid, at, body);
        }
        self.engine
            .schedule(add_secs(at, talk + held), Action::Disconnect { cid: cid.to_string(), pid: pid.to_string() });
        if let Some((d, _)) = provisional {
            if d < talk {
                self.engine
                    .schedule(add_secs(at, d), Action::Provisional { cid: cid.to_string(), pid: pid.to_string() });
            }
        }
        if consult && !is_consult {
            self.engine
                .schedule(add_secs(at, talk * 0.4), Action::Consult { cid: cid.to_string(), pid: pid.to_string() });
        }
    }

    fn agent_provisional(&mut self, cid: &str, pid: &str, _at: Timestamp) {
        let Some(p) = self.conversations.get_mut(cid).and_then(|c| c.participant_mut(pid)) else {
            return;
        };
        if p.phase != Phase::Connected || p.wrapup.is_some() {
            return;
        }
        let Some((_, code)) = p.plan.provisional.clone() else {
            return;
        };
        p.wrapup = Some(Wrapup::agent_provisional(code));
    }

    fn consult(&mut self, cid: &str, pid: &str, at: Timestamp) {
        let Some(conv) = self.conversations.get(cid) else {
            return;
        };
        let Some(p) = conv.participant(pid) else {
            return;
        };
        if p.phase != Phase::Connected {
            return;
        }
        let q = p.queue.unwrap_or(conv.queue);
        // A consult goes to any idle colleague of the queue; no one free means no consult.
        self.assign(cid, q, at, Some(pid.to_string()));
    }

    fn disconnect(&mut self, cid: &str, pid: &str, at: Timestamp) {
        let transfer_p = self.center.transfer_probability;
        let transfer = self.engine.chance(transfer_p);
        let agent_hangs_up = self.engine.chance(0.3);
        let other_queue = self.pick_queue();
        let Some(conv) = self.conversations.get_mut(cid) else {
            return;
        };
        let media = conv.media;
        let direction = conv.direction;
        let Some(p) = conv.participant_mut(pid) else {
            return;
        };
        if p.phase != Phase::Connected {
            return;
        }
        let is_consult = p.consult_participant_id.is_some();
        let transfer = transfer && !is_consult;
        let Some(q) = p.queue else { return };
        let mode = self.queues[q].mode;
        let timeout_ms = self.queues[q].timeout_ms;
        let disconnect_type = if transfer {
            "transfer"
        } else if is_consult {
            "transfer.consult"
        } else if agent_hangs_up {
            "client"
        } else {
            "peer"
        };
        p.end = Some(at);
        p.disconnect_type = Some(disconnect_type);
        p.wrapup_required = mode != AcwMode::AgentRequested || p.plan.requests_acw;
        p.prompt = Some(mode);
        p.timeout_ms = if mode.has_timeout() { timeout_ms } else { None };
        let mut actions = Vec::new();
        if p.wrapup_required {
            p.phase = Phase::Acw;
            p.acw_start = Some(at);
            p.acw_state = Some(AcwState::Pending);
            if let (true, Some(t)) = (mode.has_timeout(), timeout_ms) {
                let deadline = add_secs(at, t as f64 / 1000.0);
                p.truth.deadline = Some(deadline);
                actions.push((deadline, Action::Timeout { cid: cid.to_string(), pid: pid.to_string() }));
            }
            match p.plan.final_action.clone() {
                FinalAction::Code(d, _) => {
                    actions.push((add_secs(at, d), Action::AgentFinal { cid: cid.to_string(), pid: pid.to_string() }))
                }
                FinalAction::Skip(d) if mode == AcwMode::Optional => {
                    actions.push((add_secs(at, d), Action::AgentSkip { cid: cid.to_string(), pid: pid.to_string() }))
                }
                _ => {}
            }
        } else {
            p.phase = Phase::Done;
            p.acw_state = Some(AcwState::NotApplicable);
            p.truth.coded_by = Some(CodedBy::None);
            // An unused provisional code does not survive a leg without ACW.
            p.wrapup = None;
        }
        let user_end = json!({
            "eventTime": epoch_ms(at), "conversationId": cid, "participantId": pid, "sessionId": p.comm_id,
            "disconnectType": event_disconnect_type(disconnect_type), "mediaType": media.event_name(),
            "provider": "Edge", "direction": direction.to_uppercase(), "userId": p.user_id,
            "queueId": self.queues[q].id, "divisionId": self.division_id,
            "interactingDurationMs": p.connected_at.map(|c| (at.as_millisecond() - c.as_millisecond()).max(0)).unwrap_or(0),
            "heldDurationMs": p.held_ms,
            "alertingDurationMs": p.connected_at.map(|c| (c.as_millisecond() - p.start.as_millisecond()).max(0)).unwrap_or(0),
        });
        let release = if p.wrapup_required { None } else { p.user_id.clone() };
        for (when, a) in actions {
            self.engine.schedule(when, a);
        }
        self.emit("user.end", cid, at, user_end);
        if let Some(u) = release {
            self.release_agent(&u, at);
        }
        if transfer {
            let target = other_queue.unwrap_or(q);
            if !self.assign(cid, target, at, None) {
                self.queues[target].waiting.push_back(cid.to_string());
            }
        } else if !is_consult {
            self.customer_leaves(cid, at, agent_hangs_up);
        }
        self.maybe_end_conversation(cid);
    }

    fn customer_leaves(&mut self, cid: &str, at: Timestamp, agent_hung_up: bool) {
        let Some(conv) = self.conversations.get_mut(cid) else {
            return;
        };
        let media = conv.media;
        let direction = conv.direction;
        let Some(c) = conv.participants.iter_mut().find(|p| p.purpose == Purpose::Customer && p.end.is_none()) else {
            return;
        };
        c.end = Some(at);
        c.phase = Phase::Done;
        let dt = if agent_hung_up { "peer" } else { "endpoint" };
        c.disconnect_type = Some(dt);
        let body = json!({
            "eventTime": epoch_ms(at), "conversationId": cid, "participantId": c.id, "sessionId": c.comm_id,
            "disconnectType": event_disconnect_type(dt), "mediaType": media.event_name(), "provider": "Edge",
            "direction": direction.to_uppercase(), "divisionId": self.division_id,
            "interactingDurationMs": (at.as_millisecond() - c.start.as_millisecond()).max(0),
        });
        self.emit("customer.end", cid, at, body);
    }

    /// Sets `Conversation.endTime` once every participant has left.
    fn maybe_end_conversation(&mut self, cid: &str) {
        let Some(conv) = self.conversations.get_mut(cid) else {
            return;
        };
        if conv.end.is_none() && conv.participants.iter().all(|p| p.end.is_some()) {
            conv.end = conv.participants.iter().filter_map(|p| p.end).max();
        }
    }

    fn agent_final(&mut self, cid: &str, pid: &str, at: Timestamp) {
        let Some(p) = self.conversations.get_mut(cid).and_then(|c| c.participant_mut(pid)) else {
            return;
        };
        if p.phase != Phase::Acw || p.wrapup.as_ref().is_some_and(|w| !w.provisional) {
            return;
        }
        let FinalAction::Code(_, code) = p.plan.final_action.clone() else {
            return;
        };
        // An agent who had picked a provisional code confirms that one.
        let code = match &p.wrapup {
            Some(w) if w.by == Writer::Agent => w.code.clone().unwrap_or(code),
            _ => code,
        };
        let duration = p.acw_start.map(|s| (at.as_second() - s.as_second()).max(0));
        p.wrapup = Some(Wrapup {
            code: Some(code),
            name: None,
            notes: Some(String::new()),
            tags: Vec::new(),
            duration_seconds: duration,
            end_time: Some(at),
            provisional: false,
            by: Writer::Agent,
        });
        p.truth.coded_by = Some(CodedBy::Agent);
        self.close_window(cid, pid, at, AcwState::Complete);
    }

    fn agent_skip(&mut self, cid: &str, pid: &str, at: Timestamp) {
        let Some(p) = self.conversations.get_mut(cid).and_then(|c| c.participant_mut(pid)) else {
            return;
        };
        if p.phase != Phase::Acw || p.wrapup.as_ref().is_some_and(|w| !w.provisional) {
            return;
        }
        p.wrapup = None;
        self.close_window(cid, pid, at, AcwState::Skipped);
    }

    fn timeout(&mut self, cid: &str, pid: &str, at: Timestamp) {
        let Some(p) = self.conversations.get_mut(cid).and_then(|c| c.participant_mut(pid)) else {
            return;
        };
        match p.phase {
            Phase::Acw => {
                let duration = p.acw_start.map(|s| (at.as_second() - s.as_second()).max(0));
                p.wrapup = Some(Wrapup {
                    code: Some(SYSTEM_TIMEOUT_CODE_ID.to_string()),
                    name: Some(SYSTEM_TIMEOUT_CODE_NAME.to_string()),
                    notes: Some(String::new()),
                    tags: Vec::new(),
                    duration_seconds: duration,
                    end_time: Some(at),
                    provisional: false,
                    by: Writer::System,
                });
                p.truth.coded_by = Some(CodedBy::SystemTimeout);
                self.close_window(cid, pid, at, AcwState::Complete);
            }
            Phase::Done if p.holds_agent_until_deadline => {
                p.holds_agent_until_deadline = false;
                if let Some(u) = p.user_id.clone() {
                    self.release_agent(&u, at);
                }
            }
            _ => {}
        }
    }

    fn agent_change(&mut self, cid: &str, pid: &str, at: Timestamp) {
        let Some(p) = self.conversations.get_mut(cid).and_then(|c| c.participant_mut(pid)) else {
            return;
        };
        let Some((_, code)) = p.plan.change_after_api.clone() else {
            return;
        };
        if !p.wrapup.as_ref().is_some_and(|w| w.by == Writer::Api && !w.provisional) {
            return;
        }
        if let Some(w) = p.wrapup.as_mut() {
            w.code = Some(code);
            w.name = None;
            w.by = Writer::Agent;
        }
        p.truth.coded_by = Some(CodedBy::Agent);
        p.truth.agent_changed_after_api = true;
        self.emit_wrapup_events(cid, pid, at, false);
    }

    /// Agent `u` became idle: take the next waiting conversation of one of its queues.
    pub(crate) fn on_agent_idle(&mut self, u: usize, at: Timestamp) {
        let queues = self.users[u].queues.clone();
        for q in queues {
            while let Some(cid) = self.queues[q].waiting.pop_front() {
                if self.conversations.contains_key(&cid) {
                    if !self.assign(&cid, q, at, None) {
                        self.queues[q].waiting.push_front(cid);
                    }
                    return;
                }
            }
        }
    }

    /// Creates `n` legs already in ACW (ended within the last few seconds), spread over the queues that have ACW.
    pub fn preload(&mut self, n: usize, now: Timestamp, send_events: bool) {
        let queues: Vec<usize> = (0..self.queues.len()).filter(|&q| !self.queues[q].members.is_empty()).collect();
        if queues.is_empty() {
            return;
        }
        for i in 0..n {
            let q = queues[i % queues.len()];
            let media = self.pick_media();
            let ended_ago = self.engine.rng.gen_range(0.0..5.0);
            let talk = self.engine.draw(self.center.talk_time);
            let acw_start =
                add_secs(now, 0.0).checked_sub(jiff::SignedDuration::from_secs_f64(ended_ago)).unwrap_or(now);
            let start = acw_start.checked_sub(jiff::SignedDuration::from_secs_f64(talk + 5.0)).unwrap_or(acw_start);
            let cid = self.new_conversation(q, media, start);
            // The least busy member; beyond one leg per agent, legs double up.
            let Some(u) = self.queues[q].members.iter().copied().min_by_key(|&u| (self.users[u].busy, u)) else {
                continue;
            };
            let mut plan = self.draw_plan(q);
            plan.requests_acw = true;
            // Connected from `start + 5 s` until `acw_start`.
            plan.settle_outcome(&self.queues[q].codes, talk);
            let mut p = self.agent_leg(u, q, plan, start);
            let pid = p.id.clone();
            p.connected_at = Some(add_secs(start, 5.0));
            p.phase = Phase::Connected;
            if let Some((_, code)) = p.plan.provisional.clone() {
                p.wrapup = Some(Wrapup::agent_provisional(code));
            }
            if let Some(conv) = self.conversations.get_mut(&cid) {
                for other in conv.participants.iter_mut() {
                    other.connected_at = Some(start);
                    if other.purpose == Purpose::Acd {
                        other.end = p.connected_at;
                        other.phase = Phase::Done;
                        other.disconnect_type = Some("transfer");
                    }
                }
                conv.participants.push(p);
            }
            // Mute events for the setup unless asked: preloaded legs ended "before" the sandbox came up.
            let tx = if send_events { None } else { self.events_tx.take() };
            self.disconnect_preloaded(&cid, &pid, acw_start);
            if tx.is_some() {
                self.events_tx = tx;
            }
        }
    }

    /// A new agent participant for agent `u` on queue `q`, the agent counted busy from `at`. The wrap-up prompt comes
    /// from the queue the leg was routed on and shows from the start of the leg.
    fn agent_leg(&mut self, u: usize, q: usize, plan: crate::genesys::model::AgentPlan, at: Timestamp) -> Participant {
        let pid = self.engine.new_id();
        let comm = self.engine.new_id();
        let user = &mut self.users[u];
        user.busy += 1;
        user.status_since = at;
        let mut p = Participant::new(pid, comm, Purpose::Agent, at);
        p.user_id = Some(user.id.clone());
        p.name = user.name.clone();
        p.queue = Some(q);
        p.plan = plan;
        let mode = self.queues[q].mode;
        p.prompt = Some(mode);
        p.timeout_ms = if mode.has_timeout() { self.queues[q].timeout_ms } else { None };
        p
    }

    fn disconnect_preloaded(&mut self, cid: &str, pid: &str, at: Timestamp) {
        // Force the non-transfer path: preloaded legs are plain single-agent legs.
        let saved = self.center.transfer_probability;
        self.center.transfer_probability = 0.0;
        self.disconnect(cid, pid, at);
        self.center.transfer_probability = saved;
    }
}

/// REST `disconnectType` → detail-event enum.
fn event_disconnect_type(dt: &str) -> &'static str {
    match dt {
        "endpoint" => "ENDPOINT",
        "client" => "CLIENT",
        "system" => "SYSTEM",
        "transfer" => "TRANSFER",
        "transfer.consult" => "CONSULT_TRANSFER",
        "peer" => "PEER",
        "timeout" => "TIMEOUT",
        "error" => "ERROR",
        _ => "OTHER",
    }
}
