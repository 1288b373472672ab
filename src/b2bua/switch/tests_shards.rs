//! Several switches side by side, as the driver runs them: every message
//! goes to the switch owning its Call-ID (as [`crate::b2bua::driver`]'s
//! dispatcher hands it), and the limits hold for all of them together.

use std::sync::Arc;

use super::test_support::*;
use crate::b2bua::test_support::text;
use crate::b2bua::{SharedLoad, shard_of_message};
use crate::transport::Flow;

/// `count` rigs sharing one load, fed by Call-ID.
struct Shards {
    rigs: Vec<Rig>,
}

impl Shards {
    fn new(count: usize, cfg: super::SwitchConfig) -> Shards {
        let load = Arc::new(SharedLoad::default());
        let rigs = (0..count)
            .map(|i| {
                let mut rig = Rig::sharded(i, count, cfg.clone());
                rig.sw.share_load(load.clone());
                rig
            })
            .collect();
        Shards { rigs }
    }

    /// Feeds `message` to the shard that owns it; returns which.
    fn feed(&mut self, flow: &Flow, message: &str) -> usize {
        let shard = shard_of_message(message.as_bytes(), self.rigs.len());
        self.rigs[shard].feed(flow, message);
        shard
    }
}

/// A caller whose Call-ID is `call-{n}@10.9.8.7`.
fn caller(n: usize) -> (Caller, String) {
    let c = Caller {
        call_id: format!("call-{n}@10.9.8.7"),
        tag: format!("tag-{n}"),
        our_tag: None,
    };
    let invite = invite(&c.call_id, &c.tag, &format!("z9hG4bK-inv{n}"));
    (c, invite)
}

#[test]
fn calls_spread_over_shards_and_both_legs_reach_the_owner() {
    let mut shards = Shards::new(2, cfg());
    let mut per_shard = [0u64; 2];
    for n in 0..20 {
        let (mut caller, invite) = caller(n);
        let s = shards.feed(&carrier(), &invite);
        let rig = &mut shards.rigs[s];
        let id = rig.lookup();
        rig.answer(id, routed()).expect("a call");
        let b_invite = rig.sent_to_trunk().remove(0);
        rig.sent.clear();
        // The callee's responses and requests carry our B-leg Call-ID.
        for code in [100, 180, 200] {
            let sdp = (code == 200).then_some(B_SDP);
            let resp = crate::b2bua::test_support::reply_to(
                &b_invite,
                code,
                "btag-callee",
                CALLEE_EXTRA,
                sdp,
            );
            assert_eq!(shards.feed(&trunk(), &text(resp)), s, "response {code}");
        }
        let rig = &mut shards.rigs[s];
        assert_eq!(rig.codes_to(&carrier(), &mut caller), vec![180, 200]);
        let ack = caller.request("ACK", 10, &format!("z9hG4bK-ack{n}"), None);
        assert_eq!(shards.feed(&carrier(), &ack), s, "the caller's ACK");
        let b_ack = shards.rigs[s].sent_to_trunk();
        assert_eq!(methods(&b_ack), vec![rsip::Method::Ack]);
        // Branches differ by CSeq: distinct transactions on one trunk flow.
        let bye = callee_request(&b_invite, "BYE", 2 + n as u32, None);
        assert_eq!(shards.feed(&trunk(), &bye), s, "the callee's BYE");
        let rig = &mut shards.rigs[s];
        assert_eq!(codes(&rig.sent_to(&trunk())), vec![200]);
        let to_caller = rig.sent_to(&carrier());
        assert_eq!(
            to_caller.len(),
            1,
            "call {n}: {:?} {:?}",
            rig.sent,
            rig.events
        );
        let a_bye = request(&to_caller[0]);
        let ok = crate::b2bua::test_support::reply_to(&a_bye, 200, &caller.tag, "", None);
        assert_eq!(shards.feed(&carrier(), &text(ok)), s, "the caller's 200");
        assert_eq!(shards.rigs[s].sw.stats().calls_active, 0);
        per_shard[s] += 1;
    }
    assert!(per_shard.iter().all(|&n| n > 0), "{per_shard:?}");
    for (rig, calls) in shards.rigs.iter().zip(per_shard) {
        assert_eq!(rig.sw.stats().calls_relayed, calls);
    }
}

#[test]
fn max_calls_hold_for_all_shards_together() {
    let mut cfg = cfg();
    cfg.max_calls = 3;
    let mut shards = Shards::new(2, cfg);
    let mut refused = 0;
    for n in 0..8 {
        let (_, invite) = caller(n);
        let s = shards.feed(&carrier(), &invite);
        let rig = &mut shards.rigs[s];
        if codes(&rig.sent_to(&carrier())).contains(&503) {
            refused += 1;
        } else {
            let id = rig.lookup();
            rig.answer(id, routed()).expect("a call");
        }
        rig.take_events();
    }
    assert_eq!(refused, 5, "3 of 8 calls fit, wherever they landed");
    let active: usize = shards.rigs.iter().map(|r| r.sw.stats().calls_active).sum();
    assert_eq!(active, 3);
    let busy = shards.rigs.iter().filter(|r| r.sw.stats().calls_active > 0);
    assert_eq!(busy.count(), 2, "the calls are on both shards");
}

#[test]
fn keepalive_answers_come_back_to_the_shard_that_probed() {
    let mut c = cfg();
    c.trunks[0].keepalive = Some(std::time::Duration::from_secs(30));
    let mut shards = Shards::new(3, c);
    for s in 0..3 {
        let rig = &mut shards.rigs[s];
        rig.sw.start_keepalives(rig.now);
        rig.advance(std::time::Duration::ZERO);
        let probes = rig.sent_to(&trunk());
        assert_eq!(probes.len(), 1, "each shard probes the trunk");
        let answer = crate::b2bua::test_support::reply_to(&request(&probes[0]), 200, "t", "", None);
        assert_eq!(shards.feed(&trunk(), &text(answer)), s);
        let rig = &shards.rigs[s];
        assert!(
            rig.sent.is_empty() && rig.events.is_empty(),
            "taken as the probe's answer"
        );
    }
}
