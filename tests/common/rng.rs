//! The fuzz tests' random numbers: one small, seeded PRNG, so that a seed names the same
//! inputs on every machine, and the generators more than one test file draws from.
//!
//! Each test file adds the helpers only it needs in an `impl Rng` of its own (inherent impls
//! may live anywhere in the crate).

use ipclab::wire::rshm::{Op, Request};

/// splitmix64: turns any seed (even 0, even consecutive ones) into a well-mixed state.
pub fn splitmix(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9e37_79b9_7f4a_7c15);
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// xorshift64*: small, fast, and good enough to pick bytes and branches.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Rng {
        Rng(splitmix(seed) | 1) // xorshift's state must never be 0
    }
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_f491_4f6c_dd1d)
    }
    /// A number in `0..n` (n > 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n as u64) as usize
    }
    /// True once in `n` times, on average.
    pub fn one_in(&mut self, n: usize) -> bool {
        self.below(n) == 0
    }
    pub fn u32(&mut self) -> u32 {
        self.next() as u32
    }
    pub fn bytes(&mut self, n: usize) -> Vec<u8> {
        let mut b = Vec::with_capacity(n + 8);
        while b.len() < n {
            b.extend_from_slice(&self.next().to_le_bytes());
        }
        b.truncate(n);
        b
    }
    /// A u64 from the values decoders trip over, or any.
    pub fn edge(&mut self) -> u64 {
        const PICKS: [u64; 9] = [
            0,
            1,
            2,
            0x7fff_ffff,
            0x8000_0000,
            0xffff_ffff,
            u64::MAX - 1,
            u64::MAX,
            1 << 63,
        ];
        if self.one_in(3) {
            self.next()
        } else {
            PICKS[self.below(PICKS.len())]
        }
    }
}

/// An RSHM queue request of any op, its numbers drawn by `num` (plain `Rng::next`, or
/// `Rng::edge` to favour the values decoders trip over).
pub fn rshm_request(rng: &mut Rng, num: fn(&mut Rng) -> u64) -> Request {
    let rshmid = num(rng) as i32;
    let op = match rng.below(8) {
        0 => Op::Get {
            key: rng.u32() as i32,
            size: num(rng) >> rng.below(64),
        },
        1 => Op::At { rshmid },
        2 => Op::Dt { rshmid },
        3 => Op::Rmid { rshmid },
        4 => Op::Changed { rshmid },
        5 => Op::Wait {
            rshmid,
            node: rng.u32(),
            seen: num(rng),
            timeout_ms: num(rng),
        },
        6 => Op::ChangedRange {
            rshmid,
            offset: num(rng),
            len: num(rng),
        },
        _ => Op::Ls { after: rshmid },
    };
    Request {
        reply_type: (rng.u32() >> 1).max(1) as i32,
        serial: rng.u32(),
        pid: rng.u32() as i32,
        op,
    }
}
