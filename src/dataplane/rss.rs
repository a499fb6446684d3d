//! RSS as the ports do it: the symmetric key the ports are given, and which
//! fields a port's RSS types hash (`conntrack::steering` has the hash and
//! the owner table, which need no DPDK).

pub use crate::conntrack::steering::{symmetric_key, HashFields, Owners, RssLayout};
use dpdk_sys::consts::{RTE_ETH_RSS_TCP, RTE_ETH_RSS_UDP};

/// The fields a NIC hashes with RSS types `rss_hf`.
pub fn hash_fields_of_rss(rss_hf: u64) -> HashFields {
    HashFields {
        tcp: rss_hf & RTE_ETH_RSS_TCP != 0,
        udp: rss_hf & RTE_ETH_RSS_UDP != 0,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::conntrack::steering::SymmetricToeplitz;
    use crate::conntrack::Tuple;
    use crate::synth::xorshift;
    use crate::wire::Addr;

    /// DPDK's own software Toeplitz over the same input, as 32-bit words
    /// in host order (what `rte_softrss` takes).
    fn softrss(input: &[u8], key: &[u8]) -> u32 {
        let mut words: Vec<u32> = input
            .chunks(4)
            .map(|c| u32::from_be_bytes(c.try_into().expect("whole words")))
            .collect();
        // SAFETY: words holds input_len words; the key has 40 bytes, enough
        // for 36 bytes of input (rte_softrss reads len * 4 + 4 key bytes).
        unsafe { dpdk_sys::rte_softrss(words.as_mut_ptr(), words.len() as u32, key.as_ptr()) }
    }

    /// The hash of an even number of bytes in network order.
    fn hash_bytes(t: &SymmetricToeplitz, input: &[u8]) -> u32 {
        input
            .chunks(2)
            .fold(0, |h, p| h ^ t.half(u16::from_be_bytes([p[0], p[1]])))
    }

    fn tuple(next: &mut impl FnMut() -> u64, v6: bool, proto: u8) -> Tuple {
        let addr = |n: &mut dyn FnMut() -> u64| {
            if v6 {
                let mut o = [0u8; 16];
                o[..8].copy_from_slice(&n().to_be_bytes());
                o[8..].copy_from_slice(&n().to_be_bytes());
                Addr::v6(o)
            } else {
                Addr::v4((n() as u32).to_be_bytes())
            }
        };
        Tuple {
            src: addr(next),
            dst: addr(next),
            sport: next() as u16,
            dport: next() as u16,
            proto,
            family: if v6 { 6 } else { 4 },
            zone: 0,
        }
    }

    #[test]
    fn matches_rte_softrss_on_random_inputs() {
        let key = symmetric_key(40);
        let toeplitz = SymmetricToeplitz::default();
        let mut next = xorshift(0x9e37_79b9_7f4a_7c15);
        // Every input size the NIC hashes: IPv4 2- and 4-tuples (8, 12
        // bytes), IPv6 ones (32, 36).
        for len in [8usize, 12, 32, 36] {
            for _ in 0..2000 {
                let input: Vec<u8> = (0..len).map(|_| next() as u8).collect();
                assert_eq!(
                    hash_bytes(&toeplitz, &input),
                    softrss(&input, &key),
                    "{input:02x?}"
                );
            }
        }
    }

    #[test]
    fn tuple_hash_is_the_nics_and_symmetric() {
        let key = symmetric_key(40);
        let toeplitz = SymmetricToeplitz::default();
        let mut next = xorshift(7);
        for (v6, proto) in [(false, 6), (false, 17), (false, 1), (true, 6), (true, 17)] {
            for _ in 0..500 {
                let t = tuple(&mut next, v6, proto);
                let h = toeplitz.hash_tuple(&t, HashFields::ALL);
                assert_eq!(h, toeplitz.hash_tuple(&t.swapped(), HashFields::ALL));
                let alen = if v6 { 16 } else { 4 };
                let mut input = Vec::new();
                input.extend_from_slice(&t.src.octets()[16 - alen..]);
                input.extend_from_slice(&t.dst.octets()[16 - alen..]);
                if proto != 1 {
                    input.extend_from_slice(&t.sport.to_be_bytes());
                    input.extend_from_slice(&t.dport.to_be_bytes());
                }
                assert_eq!(h, softrss(&input, &key));
                // Addresses only, when the NIC hashes no ports.
                let none = HashFields {
                    tcp: false,
                    udp: false,
                };
                assert_eq!(
                    toeplitz.hash_tuple(&t, none),
                    softrss(&input[..2 * alen], &key)
                );
            }
        }
    }
}
