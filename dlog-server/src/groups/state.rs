//! One consumer group's classic rebalance protocol as an I/O-free state machine:
//! events in (join, sync, heartbeat, leave, the clock), decisions out.
//!
//! JoinGroup and SyncGroup responses are often not ready when the request arrives: a
//! join waits until every known member has rejoined (or the rebalance timeout), a
//! follower's sync waits for the leader's. The caller gives each such request a
//! [`Token`]; the group answers it, now or in a later event, with an [`Output`] naming
//! the token. Time is milliseconds on the caller's monotonic clock; the caller calls
//! [`Group::tick`] often enough (the server every 50 ms) to expire sessions, end
//! rebalances and the initial join delay.
//!
//! States as Kafka's: `Empty` → `PreparingRebalance` → `CompletingRebalance` →
//! `Stable`, and back to `PreparingRebalance` whenever membership or a member's
//! protocols change.

use std::collections::{BTreeSet, HashMap};

use bytes::Bytes;
use dlog_core::{Error, Result};
use indexmap::IndexMap;

/// Identifies a JoinGroup or SyncGroup request waiting for its answer.
pub type Token = u64;

/// Coordinator settings (Kafka's `group.*` broker configs).
#[derive(Debug, Clone)]
pub struct GroupConfig {
    pub min_session_timeout_ms: i32,
    pub max_session_timeout_ms: i32,
    /// `group.initial.rebalance.delay.ms`: how long an empty group waits for more
    /// members before its first generation (extended per join, up to the rebalance
    /// timeout).
    pub initial_rebalance_delay_ms: u64,
    /// `group.max.size`: joins beyond it get GROUP_MAX_SIZE_REACHED.
    pub max_size: usize,
}

impl Default for GroupConfig {
    fn default() -> Self {
        GroupConfig {
            min_session_timeout_ms: 6_000,
            max_session_timeout_ms: 1_800_000,
            initial_rebalance_delay_ms: 3_000,
            max_size: i32::MAX as usize,
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GroupState {
    Empty,
    PreparingRebalance,
    CompletingRebalance,
    Stable,
}

impl GroupState {
    /// The name DescribeGroups and ListGroups report.
    pub fn name(self) -> &'static str {
        match self {
            GroupState::Empty => "Empty",
            GroupState::PreparingRebalance => "PreparingRebalance",
            GroupState::CompletingRebalance => "CompletingRebalance",
            GroupState::Stable => "Stable",
        }
    }
}

/// A JoinGroup request as the group sees it.
#[derive(Debug, Clone)]
pub struct Join {
    pub token: Token,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub session_timeout_ms: i32,
    pub rebalance_timeout_ms: i32,
    pub protocol_type: String,
    /// (name, metadata), most preferred first.
    pub protocols: Vec<(String, Bytes)>,
    /// v4+ (KIP-394): a dynamic member's first join gets MEMBER_ID_REQUIRED.
    pub require_known_member_id: bool,
}

/// A SyncGroup request as the group sees it.
#[derive(Debug, Clone)]
pub struct Sync {
    pub token: Token,
    pub member_id: String,
    pub instance_id: Option<String>,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    /// The leader's assignments (member id, assignment); empty from followers.
    pub assignments: Vec<(String, Bytes)>,
}

/// One member in a JoinGroup response to the leader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinedMember {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub metadata: Bytes,
}

/// The answer to a JoinGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JoinResult {
    pub member_id: String,
    pub generation: i32,
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub leader: String,
    /// Filled for the leader only.
    pub members: Vec<JoinedMember>,
    /// v9+: a static leader replaced without a rebalance must not assign again.
    pub skip_assignment: bool,
}

/// The answer to a SyncGroup.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SyncResult {
    pub protocol_type: Option<String>,
    pub protocol_name: Option<String>,
    pub assignment: Bytes,
}

/// A decision: answer the request waiting under `Token`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Output {
    /// On error, `member_id` is still given (MEMBER_ID_REQUIRED carries the new id).
    Join(Token, Result<JoinResult, (Error, String)>),
    Sync(Token, Result<SyncResult>),
}

/// A member as DescribeGroups shows it.
#[derive(Debug, Clone)]
pub struct MemberView {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub metadata: Bytes,
    pub assignment: Bytes,
}

#[derive(Debug, Clone)]
struct Member {
    instance_id: Option<String>,
    client_id: String,
    client_host: String,
    session_timeout_ms: i32,
    rebalance_timeout_ms: i32,
    protocol_type: String,
    protocols: Vec<(String, Bytes)>,
    assignment: Bytes,
    /// When the session expires unless the member is heard from.
    expires_at: u64,
    awaiting_join: Option<Token>,
    awaiting_sync: Option<Token>,
    /// Joined the generation being prepared (cleared when a rebalance starts).
    joined: bool,
}

impl Member {
    fn metadata(&self, protocol: &str) -> Bytes {
        self.protocols.iter().find(|(n, _)| n == protocol).map(|(_, m)| m.clone()).unwrap_or_default()
    }
}

/// One consumer group.
#[derive(Debug)]
pub struct Group {
    pub id: String,
    config: GroupConfig,
    state: GroupState,
    generation: i32,
    protocol_type: Option<String>,
    protocol: Option<String>,
    leader: Option<String>,
    members: IndexMap<String, Member>,
    /// KIP-394: member ids handed out with MEMBER_ID_REQUIRED, expiring at the instant given.
    pending: HashMap<String, u64>,
    /// group.instance.id → member id.
    static_members: HashMap<String, String>,
    /// While preparing a rebalance: when it completes even if members are missing.
    rebalance_deadline: Option<u64>,
    /// While the initial delay of an empty group runs: when it ends.
    initial_delay_until: Option<u64>,
    next_id: u64,
    /// The durable part (see [`GroupSnapshot`]) changed since [`Group::take_dirty`].
    dirty: bool,
}

/// What of a group outlives the coordinator, as Kafka stores it in
/// `__consumer_offsets` (GroupMetadataValue): written when a generation becomes
/// Stable and when the group becomes Empty, so that after a restart the members carry
/// on with their generation instead of rejoining.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct GroupSnapshot {
    pub protocol_type: Option<String>,
    pub generation: i32,
    pub protocol: Option<String>,
    pub leader: Option<String>,
    pub members: Vec<MemberSnapshot>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberSnapshot {
    pub member_id: String,
    pub instance_id: Option<String>,
    pub client_id: String,
    pub client_host: String,
    pub rebalance_timeout_ms: i32,
    pub session_timeout_ms: i32,
    /// The member's metadata for the generation's protocol.
    pub subscription: Bytes,
    pub assignment: Bytes,
}

fn unknown(member_id: &str) -> Error {
    Error::UnknownMemberId(format!("member {member_id:?} is not in the group"))
}

impl Group {
    pub fn new(id: impl Into<String>, config: GroupConfig) -> Group {
        Group {
            id: id.into(),
            config,
            state: GroupState::Empty,
            generation: 0,
            protocol_type: None,
            protocol: None,
            leader: None,
            members: IndexMap::new(),
            pending: HashMap::new(),
            static_members: HashMap::new(),
            rebalance_deadline: None,
            initial_delay_until: None,
            next_id: 0,
            dirty: false,
        }
    }

    /// The group as it was last stored: Stable with its members (whose sessions start
    /// over at `now`), or Empty.
    pub fn restore(id: impl Into<String>, config: GroupConfig, snap: GroupSnapshot, now: u64) -> Group {
        let mut g = Group::new(id, config);
        g.generation = snap.generation;
        if snap.members.is_empty() {
            return g;
        }
        let protocol = snap.protocol.clone().unwrap_or_default();
        let protocol_type = snap.protocol_type.clone().unwrap_or_default();
        for m in snap.members {
            if let Some(i) = &m.instance_id {
                g.static_members.insert(i.clone(), m.member_id.clone());
            }
            let member = Member {
                instance_id: m.instance_id,
                client_id: m.client_id,
                client_host: m.client_host,
                session_timeout_ms: m.session_timeout_ms,
                rebalance_timeout_ms: m.rebalance_timeout_ms,
                protocol_type: protocol_type.clone(),
                protocols: vec![(protocol.clone(), m.subscription)],
                assignment: m.assignment,
                expires_at: now + m.session_timeout_ms.max(0) as u64,
                awaiting_join: None,
                awaiting_sync: None,
                joined: false,
            };
            g.members.insert(m.member_id, member);
        }
        g.state = GroupState::Stable;
        g.protocol_type = snap.protocol_type;
        g.protocol = snap.protocol;
        g.leader = snap.leader.filter(|l| g.members.contains_key(l)).or_else(|| g.members.keys().next().cloned());
        g
    }

    /// The durable part of the group now.
    pub fn snapshot(&self) -> GroupSnapshot {
        let stable = self.state == GroupState::Stable;
        GroupSnapshot {
            protocol_type: self.protocol_type.clone(),
            generation: self.generation,
            protocol: self.protocol.clone(),
            leader: self.leader.clone(),
            members: if !stable {
                Vec::new()
            } else {
                self.members
                    .iter()
                    .map(|(id, m)| MemberSnapshot {
                        member_id: id.clone(),
                        instance_id: m.instance_id.clone(),
                        client_id: m.client_id.clone(),
                        client_host: m.client_host.clone(),
                        rebalance_timeout_ms: m.rebalance_timeout_ms,
                        session_timeout_ms: m.session_timeout_ms,
                        subscription: self.protocol.as_deref().map(|p| m.metadata(p)).unwrap_or_default(),
                        assignment: m.assignment.clone(),
                    })
                    .collect()
            },
        }
    }

    /// Whether the durable part changed since the last call (then the caller stores
    /// [`Group::snapshot`]).
    pub fn take_dirty(&mut self) -> bool {
        std::mem::take(&mut self.dirty)
    }

    /// Whether the group exists for ListGroups/DescribeGroups: it has members, or has
    /// had a generation (an Empty group that remembers it was used).
    pub fn exists(&self) -> bool {
        !self.members.is_empty() || self.generation > 0
    }

    pub fn state(&self) -> GroupState {
        self.state
    }

    pub fn generation(&self) -> i32 {
        self.generation
    }

    pub fn protocol_type(&self) -> Option<&str> {
        self.protocol_type.as_deref()
    }

    pub fn protocol(&self) -> Option<&str> {
        self.protocol.as_deref()
    }

    pub fn leader(&self) -> Option<&str> {
        self.leader.as_deref()
    }

    pub fn member_ids(&self) -> Vec<String> {
        self.members.keys().cloned().collect()
    }

    pub fn is_empty(&self) -> bool {
        self.members.is_empty()
    }

    /// Members as DescribeGroups reports them (metadata of the chosen protocol).
    pub fn describe(&self) -> Vec<MemberView> {
        self.members
            .iter()
            .map(|(id, m)| MemberView {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                client_id: m.client_id.clone(),
                client_host: m.client_host.clone(),
                metadata: self.protocol.as_deref().map(|p| m.metadata(p)).unwrap_or_default(),
                assignment: m.assignment.clone(),
            })
            .collect()
    }

    fn new_member_id(&mut self, client_id: &str) -> String {
        self.next_id += 1;
        let prefix = if client_id.is_empty() { "member" } else { client_id };
        format!("{prefix}-{}", uuid::Uuid::new_v4())
    }

    /// The protocols every member supports (all of `extra`'s when the group is empty).
    fn candidate_protocols(&self, extra: Option<&[(String, Bytes)]>) -> BTreeSet<String> {
        let mut sets =
            self.members.values().map(|m| m.protocols.iter().map(|(n, _)| n.clone()).collect::<BTreeSet<_>>());
        let mut candidates = match extra {
            Some(p) => p.iter().map(|(n, _)| n.clone()).collect(),
            None => sets.next().unwrap_or_default(),
        };
        for s in sets {
            candidates = candidates.intersection(&s).cloned().collect();
        }
        candidates
    }

    /// The protocol all members support that most members prefer (ties: the leader's order).
    fn select_protocol(&self) -> Option<String> {
        let candidates = self.candidate_protocols(None);
        let mut votes: IndexMap<String, usize> = IndexMap::new();
        if let Some(first) = self.members.values().next() {
            for (n, _) in &first.protocols {
                if candidates.contains(n) {
                    votes.insert(n.clone(), 0);
                }
            }
        }
        for m in self.members.values() {
            if let Some((n, _)) = m.protocols.iter().find(|(n, _)| candidates.contains(n)) {
                *votes.entry(n.clone()).or_default() += 1;
            }
        }
        let mut best: Option<(String, usize)> = None;
        for (n, v) in votes {
            if best.as_ref().is_none_or(|(_, b)| v > *b) {
                best = Some((n, v));
            }
        }
        best.map(|(n, _)| n)
    }

    /// A JoinGroup. Its answer is in the outputs now or after a later event.
    pub fn join(&mut self, now: u64, j: Join) -> Vec<Output> {
        let mut out = Vec::new();
        let fail = |e: Error, id: &str| vec![Output::Join(j.token, Err((e, id.to_string())))];
        if j.session_timeout_ms < self.config.min_session_timeout_ms
            || j.session_timeout_ms > self.config.max_session_timeout_ms
        {
            let e = Error::InvalidSessionTimeout(format!(
                "session timeout {} ms is outside [{}, {}]",
                j.session_timeout_ms, self.config.min_session_timeout_ms, self.config.max_session_timeout_ms
            ));
            return fail(e, &j.member_id);
        }
        if j.protocol_type.is_empty() || j.protocols.is_empty() {
            return fail(Error::InconsistentGroupProtocol("empty protocol type or protocol list".into()), &j.member_id);
        }
        let known = self.members.contains_key(&j.member_id);
        // A new member (or one changing protocols) must share the group's type and a protocol.
        if !self.members.is_empty() {
            let others_type = self.protocol_type.as_deref().or(self.members.values().next().map(|m| &*m.protocol_type));
            let compatible = others_type == Some(&*j.protocol_type) && {
                let others: Vec<_> = self.members.iter().filter(|(id, _)| **id != j.member_id).collect();
                others.is_empty() || {
                    let mut c: BTreeSet<String> = j.protocols.iter().map(|(n, _)| n.clone()).collect();
                    for (_, m) in others {
                        c = c.intersection(&m.protocols.iter().map(|(n, _)| n.clone()).collect()).cloned().collect();
                    }
                    !c.is_empty()
                }
            };
            if !compatible {
                return fail(
                    Error::InconsistentGroupProtocol(format!(
                        "protocol type {:?} or protocols {:?} do not match the group's",
                        j.protocol_type,
                        j.protocols.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>()
                    )),
                    &j.member_id,
                );
            }
        }

        let is_new = match &j.instance_id {
            Some(i) => !self.static_members.contains_key(i),
            None => !known,
        };
        if is_new && self.members.len() >= self.config.max_size {
            let e = Error::GroupMaxSizeReached(format!("group {:?} has {} members", self.id, self.members.len()));
            return fail(e, &j.member_id);
        }
        if let Some(instance) = j.instance_id.clone() {
            return self.join_static(now, j, instance);
        }
        if j.member_id.is_empty() {
            let id = self.new_member_id(&j.client_id);
            if j.require_known_member_id {
                let session = j.session_timeout_ms as u64;
                self.pending.insert(id.clone(), now + session);
                return fail(Error::MemberIdRequired, &id);
            }
            self.add_member(now, id, &j, &mut out);
            return out;
        }
        if self.pending.remove(&j.member_id).is_some() {
            let id = j.member_id.clone();
            self.add_member(now, id, &j, &mut out);
            return out;
        }
        if !known {
            return fail(unknown(&j.member_id), &j.member_id);
        }
        self.rejoin(now, j, &mut out);
        out
    }

    fn join_static(&mut self, now: u64, j: Join, instance: String) -> Vec<Output> {
        let mut out = Vec::new();
        match self.static_members.get(&instance).cloned() {
            None => {
                if !j.member_id.is_empty() && !self.members.contains_key(&j.member_id) {
                    out.push(Output::Join(j.token, Err((unknown(&j.member_id), j.member_id.clone()))));
                    return out;
                }
                let id = if j.member_id.is_empty() {
                    format!("{instance}-{}", uuid::Uuid::new_v4())
                } else {
                    j.member_id.clone()
                };
                self.static_members.insert(instance, id.clone());
                self.add_member(now, id, &j, &mut out);
            }
            Some(old) if j.member_id.is_empty() => {
                // The instance restarted: its new member id replaces the old one.
                let new_id = format!("{instance}-{}", uuid::Uuid::new_v4());
                let mut m = self.members.shift_remove(&old).expect("static member is a member");
                if let Some(t) = m.awaiting_join.take() {
                    out.push(Output::Join(t, Err((Error::FencedInstanceId(instance.clone()), old.clone()))));
                }
                if let Some(t) = m.awaiting_sync.take() {
                    out.push(Output::Sync(t, Err(Error::FencedInstanceId(instance.clone()))));
                }
                let unchanged = m.protocols == j.protocols;
                m.client_id = j.client_id.clone();
                m.client_host = j.client_host.clone();
                m.session_timeout_ms = j.session_timeout_ms;
                m.rebalance_timeout_ms = j.rebalance_timeout_ms;
                m.protocols = j.protocols.clone();
                m.expires_at = now + j.session_timeout_ms as u64;
                self.members.insert(new_id.clone(), m);
                self.static_members.insert(instance, new_id.clone());
                let was_leader = self.leader.as_deref() == Some(&*old);
                if was_leader {
                    self.leader = Some(new_id.clone());
                }
                match self.state {
                    GroupState::Stable if unchanged => {
                        self.dirty = true;
                        // No rebalance: the member gets the current generation back and
                        // keeps its assignment (a leader must not reassign, v9+).
                        let members = if was_leader { self.joined_members() } else { Vec::new() };
                        out.push(Output::Join(
                            j.token,
                            Ok(JoinResult {
                                member_id: new_id.clone(),
                                generation: self.generation,
                                protocol_type: self.protocol_type.clone(),
                                protocol_name: self.protocol.clone(),
                                leader: self.leader.clone().unwrap_or_default(),
                                members,
                                skip_assignment: was_leader,
                            }),
                        ));
                    }
                    GroupState::PreparingRebalance => {
                        let m = self.members.get_mut(&new_id).expect("inserted");
                        m.awaiting_join = Some(j.token);
                        m.joined = true;
                        self.maybe_complete_join(now, &mut out);
                    }
                    _ => {
                        let m = self.members.get_mut(&new_id).expect("inserted");
                        m.awaiting_join = Some(j.token);
                        m.joined = true;
                        self.prepare_rebalance(now, &mut out);
                        self.maybe_complete_join(now, &mut out);
                    }
                }
            }
            Some(current) if current == j.member_id => self.rejoin(now, j, &mut out),
            Some(current) => {
                let e = Error::FencedInstanceId(format!("instance {instance:?} is now member {current:?}"));
                out.push(Output::Join(j.token, Err((e, j.member_id.clone()))));
            }
        }
        out
    }

    fn add_member(&mut self, now: u64, id: String, j: &Join, out: &mut Vec<Output>) {
        let m = Member {
            instance_id: j.instance_id.clone(),
            client_id: j.client_id.clone(),
            client_host: j.client_host.clone(),
            session_timeout_ms: j.session_timeout_ms,
            rebalance_timeout_ms: j.rebalance_timeout_ms,
            protocol_type: j.protocol_type.clone(),
            protocols: j.protocols.clone(),
            assignment: Bytes::new(),
            expires_at: now + j.session_timeout_ms as u64,
            awaiting_join: Some(j.token),
            awaiting_sync: None,
            joined: true,
        };
        let was_empty = self.state == GroupState::Empty;
        self.members.insert(id, m);
        if self.state != GroupState::PreparingRebalance {
            self.prepare_rebalance(now, out);
        }
        if was_empty {
            let delay = self.config.initial_rebalance_delay_ms;
            if delay > 0 {
                self.initial_delay_until = Some(now + delay);
            }
        } else if let Some(until) = self.initial_delay_until {
            // Each join during the initial delay extends it, up to the rebalance timeout.
            let cap = self.rebalance_deadline.unwrap_or(until);
            self.initial_delay_until = Some((now + self.config.initial_rebalance_delay_ms).min(cap).max(until));
        }
        self.maybe_complete_join(now, out);
    }

    /// A known member joins again.
    fn rejoin(&mut self, now: u64, j: Join, out: &mut Vec<Output>) {
        let id = j.member_id.clone();
        let is_leader = self.leader.as_deref() == Some(&*id);
        let m = self.members.get_mut(&id).expect("known member");
        let unchanged = m.protocols == j.protocols;
        m.expires_at = now + j.session_timeout_ms as u64;
        m.session_timeout_ms = j.session_timeout_ms;
        m.rebalance_timeout_ms = j.rebalance_timeout_ms;
        m.client_id = j.client_id.clone();
        m.client_host = j.client_host.clone();
        m.protocols = j.protocols.clone();
        if let Some(t) = m.awaiting_join.replace(j.token) {
            // A duplicate join: the older request is superseded.
            out.push(Output::Join(t, Err((Error::RebalanceInProgress, id.clone()))));
        }
        m.joined = true;
        match self.state {
            GroupState::PreparingRebalance => self.maybe_complete_join(now, out),
            GroupState::CompletingRebalance | GroupState::Stable if unchanged && !is_leader => {
                // Nothing changed: answer with the current generation (the member may
                // have missed the response).
                let m = self.members.get_mut(&id).expect("known member");
                let t = m.awaiting_join.take().expect("set above");
                out.push(Output::Join(t, Ok(self.join_result(&id))));
            }
            GroupState::CompletingRebalance if unchanged => {
                let m = self.members.get_mut(&id).expect("known member");
                let t = m.awaiting_join.take().expect("set above");
                out.push(Output::Join(t, Ok(self.join_result(&id))));
            }
            _ => {
                self.prepare_rebalance(now, out);
                self.maybe_complete_join(now, out);
            }
        }
    }

    fn joined_members(&self) -> Vec<JoinedMember> {
        let protocol = self.protocol.clone().unwrap_or_default();
        self.members
            .iter()
            .map(|(id, m)| JoinedMember {
                member_id: id.clone(),
                instance_id: m.instance_id.clone(),
                metadata: m.metadata(&protocol),
            })
            .collect()
    }

    fn join_result(&self, id: &str) -> JoinResult {
        let is_leader = self.leader.as_deref() == Some(id);
        JoinResult {
            member_id: id.to_string(),
            generation: self.generation,
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            leader: self.leader.clone().unwrap_or_default(),
            members: if is_leader { self.joined_members() } else { Vec::new() },
            skip_assignment: false,
        }
    }

    /// Starts a rebalance: every member must join again within the rebalance timeout.
    fn prepare_rebalance(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.state == GroupState::CompletingRebalance {
            // Assignments of the generation being completed are void.
            for (_, m) in self.members.iter_mut() {
                if let Some(t) = m.awaiting_sync.take() {
                    out.push(Output::Sync(t, Err(Error::RebalanceInProgress)));
                }
            }
        }
        self.state = GroupState::PreparingRebalance;
        let timeout = self.members.values().map(|m| m.rebalance_timeout_ms.max(0) as u64).max().unwrap_or(0);
        self.rebalance_deadline = Some(now + timeout);
    }

    /// Completes the join phase when every member has joined and no initial delay runs.
    fn maybe_complete_join(&mut self, now: u64, out: &mut Vec<Output>) {
        if self.state != GroupState::PreparingRebalance {
            return;
        }
        if self.initial_delay_until.is_some_and(|t| now < t) {
            return;
        }
        if self.members.values().all(|m| m.joined) || self.rebalance_deadline.is_some_and(|d| now >= d) {
            self.complete_join(now, out);
        }
    }

    fn complete_join(&mut self, now: u64, out: &mut Vec<Output>) {
        self.initial_delay_until = None;
        self.rebalance_deadline = None;
        // Members that did not join in time leave the group.
        let missing: Vec<String> = self.members.iter().filter(|(_, m)| !m.joined).map(|(id, _)| id.clone()).collect();
        for id in missing {
            self.remove_member(&id, out);
        }
        self.generation += 1;
        if self.members.is_empty() {
            self.dirty = true;
            self.state = GroupState::Empty;
            self.protocol = None;
            self.protocol_type = None;
            self.leader = None;
            return;
        }
        self.state = GroupState::CompletingRebalance;
        self.protocol_type = self.members.values().next().map(|m| m.protocol_type.clone());
        self.protocol = self.select_protocol();
        if self.leader.as_ref().is_none_or(|l| !self.members.contains_key(l)) {
            self.leader = self.members.keys().next().cloned();
        }
        let ids: Vec<String> = self.members.keys().cloned().collect();
        for id in ids {
            let m = self.members.get_mut(&id).expect("listed");
            m.joined = false;
            m.expires_at = m.expires_at.max(now + m.session_timeout_ms as u64);
            m.assignment = Bytes::new();
            if let Some(t) = m.awaiting_join.take() {
                out.push(Output::Join(t, Ok(self.join_result(&id))));
            }
        }
    }

    fn remove_member(&mut self, id: &str, out: &mut Vec<Output>) {
        let Some(m) = self.members.shift_remove(id) else { return };
        if let Some(t) = m.awaiting_join {
            out.push(Output::Join(t, Err((unknown(id), id.to_string()))));
        }
        if let Some(t) = m.awaiting_sync {
            out.push(Output::Sync(t, Err(unknown(id))));
        }
        if let Some(i) = &m.instance_id {
            if self.static_members.get(i).map(|s| s.as_str()) == Some(id) {
                self.static_members.remove(i);
            }
        }
        if self.leader.as_deref() == Some(id) {
            self.leader = None;
        }
    }

    /// Membership changed by a departure: rebalance (or finish the one in progress).
    fn after_departure(&mut self, now: u64, out: &mut Vec<Output>) {
        match self.state {
            GroupState::Stable | GroupState::CompletingRebalance => {
                self.prepare_rebalance(now, out);
                self.maybe_complete_join(now, out);
            }
            GroupState::PreparingRebalance => self.maybe_complete_join(now, out),
            GroupState::Empty => {}
        }
    }

    /// Checks a request's member id, instance id and generation (SyncGroup, Heartbeat,
    /// OffsetCommit).
    pub fn check_member(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<()> {
        if let Some(i) = instance_id {
            match self.static_members.get(i) {
                Some(current) if current != member_id => {
                    return Err(Error::FencedInstanceId(format!("instance {i:?} is now member {current:?}")))
                }
                _ => {}
            }
        }
        if !self.members.contains_key(member_id) {
            return Err(unknown(member_id));
        }
        if generation != self.generation {
            return Err(Error::IllegalGeneration { client: generation, current: self.generation });
        }
        Ok(())
    }

    /// A SyncGroup.
    pub fn sync(&mut self, now: u64, s: Sync) -> Vec<Output> {
        let mut out = Vec::new();
        if let Err(e) = self.check_member(&s.member_id, s.instance_id.as_deref(), s.generation) {
            out.push(Output::Sync(s.token, Err(e)));
            return out;
        }
        let mismatch = s.protocol_type.as_ref().is_some_and(|t| Some(t) != self.protocol_type.as_ref())
            || s.protocol_name.as_ref().is_some_and(|p| Some(p) != self.protocol.as_ref());
        if mismatch {
            let e = Error::InconsistentGroupProtocol("sync names another protocol than the generation's".into());
            out.push(Output::Sync(s.token, Err(e)));
            return out;
        }
        let m = self.members.get_mut(&s.member_id).expect("checked");
        m.expires_at = now + m.session_timeout_ms as u64;
        match self.state {
            GroupState::Empty => out.push(Output::Sync(s.token, Err(unknown(&s.member_id)))),
            GroupState::PreparingRebalance => out.push(Output::Sync(s.token, Err(Error::RebalanceInProgress))),
            GroupState::Stable => {
                let r = self.sync_result(&s.member_id);
                out.push(Output::Sync(s.token, Ok(r)));
            }
            GroupState::CompletingRebalance => {
                if let Some(t) = m.awaiting_sync.replace(s.token) {
                    out.push(Output::Sync(t, Err(Error::RebalanceInProgress)));
                }
                if self.leader.as_deref() == Some(&*s.member_id) {
                    let mut given: HashMap<String, Bytes> = s.assignments.into_iter().collect();
                    for (id, m) in self.members.iter_mut() {
                        m.assignment = given.remove(id).unwrap_or_default();
                    }
                    self.state = GroupState::Stable;
                    self.dirty = true;
                    let ids: Vec<String> = self.members.keys().cloned().collect();
                    for id in ids {
                        if let Some(t) = self.members.get_mut(&id).and_then(|m| m.awaiting_sync.take()) {
                            out.push(Output::Sync(t, Ok(self.sync_result(&id))));
                        }
                    }
                }
            }
        }
        out
    }

    fn sync_result(&self, id: &str) -> SyncResult {
        SyncResult {
            protocol_type: self.protocol_type.clone(),
            protocol_name: self.protocol.clone(),
            assignment: self.members.get(id).map(|m| m.assignment.clone()).unwrap_or_default(),
        }
    }

    /// A Heartbeat: keeps the session; REBALANCE_IN_PROGRESS tells the member to rejoin.
    pub fn heartbeat(&mut self, now: u64, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<()> {
        if self.state == GroupState::Empty {
            return Err(unknown(member_id));
        }
        self.check_member(member_id, instance_id, generation)?;
        self.touch(now, member_id);
        match self.state {
            GroupState::PreparingRebalance => Err(Error::RebalanceInProgress),
            _ => Ok(()),
        }
    }

    fn touch(&mut self, now: u64, member_id: &str) {
        if let Some(m) = self.members.get_mut(member_id) {
            m.expires_at = now + m.session_timeout_ms as u64;
        }
    }

    /// A LeaveGroup of one or more members (v3+ names instance ids too). Returns each
    /// member's outcome (with the member id removed) in order.
    pub fn leave(&mut self, now: u64, leaving: &[(String, Option<String>)]) -> (Vec<Result<String>>, Vec<Output>) {
        let mut out = Vec::new();
        let mut results = Vec::with_capacity(leaving.len());
        let mut any = false;
        for (member_id, instance_id) in leaving {
            let id = match instance_id {
                Some(i) => match self.static_members.get(i) {
                    None => Err(unknown(member_id)),
                    Some(current) if !member_id.is_empty() && current != member_id => {
                        Err(Error::FencedInstanceId(format!("instance {i:?} is now member {current:?}")))
                    }
                    Some(current) => Ok(current.clone()),
                },
                None if self.pending.remove(member_id).is_some() => {
                    results.push(Ok(member_id.clone()));
                    continue;
                }
                None if self.members.contains_key(member_id) => Ok(member_id.clone()),
                None => Err(unknown(member_id)),
            };
            if let Ok(id) = &id {
                self.remove_member(id, &mut out);
                any = true;
            }
            results.push(id);
        }
        if any {
            self.after_departure(now, &mut out);
        }
        (results, out)
    }

    /// The earliest instant at which `tick` has something to do.
    pub fn next_deadline(&self) -> Option<u64> {
        let sessions = self.members.values().filter(|m| !self.session_paused(m)).map(|m| m.expires_at);
        sessions
            .chain(self.pending.values().copied())
            .chain(self.rebalance_deadline)
            .chain(self.initial_delay_until)
            .min()
    }

    /// A member waiting in a join is not expired: the rebalance timeout bounds it.
    fn session_paused(&self, m: &Member) -> bool {
        self.state == GroupState::PreparingRebalance && m.awaiting_join.is_some()
    }

    /// Advances the clock: expires sessions and pending member ids, ends rebalances.
    pub fn tick(&mut self, now: u64) -> Vec<Output> {
        let mut out = Vec::new();
        self.pending.retain(|_, until| *until > now);
        let expired: Vec<String> = self
            .members
            .iter()
            .filter(|(_, m)| !self.session_paused(m) && m.expires_at <= now)
            .map(|(id, _)| id.clone())
            .collect();
        if !expired.is_empty() {
            for id in &expired {
                self.remove_member(id, &mut out);
            }
            self.after_departure(now, &mut out);
        }
        self.maybe_complete_join(now, &mut out);
        out
    }

    /// Whether an OffsetCommit from this member may be accepted: a known member of the
    /// current generation, or a simple (`generation` -1) commit to a group without members.
    ///
    /// As in Kafka, commits are accepted while a rebalance is being prepared: the
    /// generation is still the members' one, and eager consumers commit what they
    /// consumed when told to rejoin, before giving up their partitions. Between the join
    /// and the sync (CompletingRebalance) the member has not got its new assignment yet.
    pub fn check_commit(&self, member_id: &str, instance_id: Option<&str>, generation: i32) -> Result<()> {
        if generation < 0 && self.members.is_empty() {
            return Ok(());
        }
        self.check_member(member_id, instance_id, generation)?;
        if self.state == GroupState::CompletingRebalance {
            return Err(Error::RebalanceInProgress);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests;
