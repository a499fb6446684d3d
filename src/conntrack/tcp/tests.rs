//! `packet`'s fast path for an established ACK against the general path it
//! stands in for: over connections and segments drawn near the window's
//! edges, both must give the same verdict and leave the same state.

use proptest::prelude::*;

use super::*;
use crate::synth::Tcp;
use crate::wire::{TCP_CWR, TCP_ECE, TCP_PSH, TCP_URG};

/// The two directions' sequence spaces: one about to wrap, one at the
/// sign boundary of `before`'s subtraction.
const SPACE: [u32; 2] = [0xffff_f000, 0x7fff_0000];

/// A number in sequence space `space`: at one of the offsets the checks
/// turn on (Linux's MAXACKWINCONST, 16-bit windows, one), or anywhere
/// within a few windows.
fn in_space(space: usize) -> impl Strategy<Value = u32> {
    let edges = prop::sample::select(vec![
        -70_000i64, -66_000, -65_536, -65_535, -1_001, -1, 0, 1, 1_000, 65_535, 65_536, 70_000,
    ]);
    prop_oneof![edges, -200_000i64..200_000]
        .prop_map(move |off| SPACE[space].wrapping_add(off as u32))
}

fn window() -> impl Strategy<Value = u32> {
    prop_oneof![
        Just(0u32),
        Just(1),
        1u32..70_000,
        60_000u32..200_000,
        any::<u32>()
    ]
}

/// One end, sending in sequence space `space` (its ACKs in the other).
fn peer(space: usize) -> impl Strategy<Value = TcpPeer> {
    (
        in_space(space),
        in_space(space),
        window(),
        in_space(1 - space),
        0u8..=MAX_WSCALE,
        0u8..0x40,
    )
        .prop_map(
            |(td_end, td_maxend, td_maxwin, td_maxack, td_scale, flags)| TcpPeer {
                td_end,
                td_maxend,
                td_maxwin,
                td_maxack,
                td_scale,
                flags,
            },
        )
}

fn flag_set() -> impl Strategy<Value = FlagSet> {
    prop::sample::select(vec![
        FlagSet::Syn,
        FlagSet::SynAck,
        FlagSet::Fin,
        FlagSet::Ack,
        FlagSet::Rst,
        FlagSet::None,
    ])
}

fn dir() -> impl Strategy<Value = Dir> {
    prop_oneof![Just(Dir::Original), Just(Dir::Reply)]
}

/// A connection, ESTABLISHED four times in five.
fn conn() -> impl Strategy<Value = TcpConn> {
    let state = prop_oneof![
        4 => Just(TcpState::Established),
        1 => prop::sample::select(TcpState::ALL.to_vec()),
    ];
    (
        (state, peer(0), peer(1), dir(), 0u8..5, flag_set()),
        (
            0u8..=MAX_WSCALE,
            any::<u8>(),
            prop_oneof![Just(0u16), any::<u16>()],
        ),
        (in_space(0), in_space(1), in_space(0)),
    )
        .prop_map(
            |(
                (state, a, b, last_dir, retrans, last_index),
                (last_wscale, last_flags, last_win),
                (last_seq, last_ack, last_end),
            )| TcpConn {
                state,
                seen: [a, b],
                last_dir,
                retrans,
                last_index,
                last_wscale,
                last_flags,
                last_win,
                last_seq,
                last_ack,
                last_end,
            },
        )
}

/// A segment's header bytes: an ACK with any of the flags that leave it
/// one (PSH, URG, ECE, CWR) most of the time, any flags otherwise; no
/// options, a SACK block, or an aligned timestamp.
fn header(dir: Dir) -> impl Strategy<Value = Vec<u8>> {
    let d = dir.index();
    let extra = prop::sample::subsequence(vec![TCP_PSH, TCP_URG, TCP_ECE, TCP_CWR], 0..=4)
        .prop_map(|f| f.into_iter().fold(TCP_ACK, |a, b| a | b));
    let flags = prop_oneof![4 => extra, 1 => any::<u8>()];
    let options = prop_oneof![
        Just(vec![]),
        in_space(1 - d).prop_map(|right| {
            let mut o = vec![1, 1, 5, 10];
            o.extend_from_slice(&right.wrapping_sub(100).to_be_bytes());
            o.extend_from_slice(&right.to_be_bytes());
            o
        }),
        Just(vec![1, 1, 8, 10, 0, 0, 0, 1, 0, 0, 0, 2]),
    ];
    (
        in_space(d),
        in_space(1 - d),
        flags,
        prop_oneof![Just(0u16), any::<u16>()],
        options,
    )
        .prop_map(|(seq, ack, flags, window, options)| {
            Tcp {
                sport: 1024,
                dport: 80,
                seq,
                ack,
                flags,
                window,
                options: &options,
            }
            .bytes(&[])
        })
}

/// A segment's direction and header, with its payload's length.
fn segment() -> impl Strategy<Value = (Dir, Vec<u8>, u32)> {
    dir().prop_flat_map(|d| {
        (
            Just(d),
            header(d),
            prop_oneof![Just(0u32), 1u32..1_500, 60_000u32..70_000],
        )
    })
}

fn config() -> impl Strategy<Value = TcpConfig> {
    (any::<bool>(), 0u8..5).prop_map(|(be_liberal, max_retrans)| TcpConfig {
        be_liberal,
        max_retrans,
        ..TcpConfig::default()
    })
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(20_000))]

    #[test]
    fn fast_path_agrees_with_the_general_one(
        conn in conn(),
        (dir, bytes, payload_len) in segment(),
        seen_reply in any::<bool>(),
        assured in any::<bool>(),
        ack_offset in prop_oneof![Just(0i32), -3_000i32..3_000],
        cfg in config(),
    ) {
        let seg = Segment {
            hdr: TcpHeader::parse(&bytes).unwrap(),
            payload_len,
            payload: &[],
        };
        let (mut fast, mut general) = (conn, conn);
        let v = fast.packet(dir, &seg, seen_reply, assured, ack_offset, &cfg);
        let w = general.any_segment(dir, &seg, seen_reply, assured, ack_offset, &cfg);
        prop_assert_eq!(v, w);
        prop_assert_eq!(fast, general);
    }
}

/// The fast path's premise: an ACK leaves ESTABLISHED where it is, in
/// either direction, with no special case of `any_segment` on the way.
#[test]
fn an_ack_keeps_established_in_both_directions() {
    for d in [Dir::Original, Dir::Reply] {
        let next = TRANSITIONS[d.index()][FlagSet::Ack as usize][TcpState::Established as usize];
        assert_eq!(next, Next::To(TcpState::Established));
    }
}

/// The property above is worth something only if its draws reach the
/// fast path and pass its window checks often, liberal or not: count how
/// often they do.
#[test]
fn the_draws_reach_accepted_fast_path_segments() {
    use proptest::strategy::ValueTree;
    use proptest::test_runner::TestRunner;
    let mut runner = TestRunner::deterministic();
    let draw = (conn(), segment(), any::<bool>(), config());
    let (mut fast, mut accepted) = (0, 0);
    for _ in 0..5_000 {
        let (mut c, (dir, bytes, payload_len), seen_reply, cfg) =
            draw.new_tree(&mut runner).unwrap().current();
        let hdr = TcpHeader::parse(&bytes).unwrap();
        let liberal = cfg.be_liberal || c.seen[dir.index()].flags & BE_LIBERAL != 0;
        if liberal || c.state != TcpState::Established || hdr.flags() & FLAG_SET_BITS != TCP_ACK {
            continue;
        }
        fast += 1;
        let seg = Segment {
            hdr,
            payload_len,
            payload: &[],
        };
        if let TcpVerdict::Accept { .. } = c.packet(dir, &seg, seen_reply, true, 0, &cfg) {
            accepted += 1;
        }
    }
    assert!(fast > 500 && accepted > fast / 10, "{accepted} of {fast}");
}
