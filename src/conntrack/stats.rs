//! A tracker's counters, as `conntrack -S` names them.

/// Counters, named as `conntrack -S` names them. Every packet given to
/// ingress counts once in exactly one of `found`, `new`, `invalid` and
/// `ignore`; the others count events.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Packets of an existing connection (RELATED ICMP errors included).
    pub found: u64,
    /// Packets that created a connection.
    pub new: u64,
    /// Packets marked INVALID.
    pub invalid: u64,
    /// Packets not tracked (not IP, or UNTRACKED).
    pub ignore: u64,
    /// Connections confirmed into the table.
    pub insert: u64,
    /// Confirms refused: the tuple was taken meanwhile (TCP).
    pub insert_failed: u64,
    /// New connections refused: table full and nothing to early-drop.
    pub drop: u64,
    /// Connections evicted to make room: by a new connection finding the
    /// table full, or by gc past 95% full (Linux counts only the first
    /// here; ctfwd counts both, so the counter says what a flood cost).
    pub early_drop: u64,
    /// INVALID packets that were malformed (bad headers or checksums).
    pub error: u64,
    /// Connections removed on timeout.
    pub expired: u64,
    /// Confirms that found the same tuple confirmed meanwhile and joined it.
    pub clash_resolve: u64,
    /// TCP connections deleted to be reopened by a new SYN.
    pub search_restart: u64,
    /// Connections deleted by their tracker (an RST with no reply).
    pub delete: u64,
    /// Unconfirmed connections reclaimed because nobody confirmed or
    /// discarded them (a caller bug; should stay 0).
    pub unconfirmed_reaped: u64,
    /// Helper commands that could not be used (malformed, cut, out of
    /// range, FTP bounce): no expectation.
    pub helper_refused: u64,
}

impl Stats {
    /// (name, value) pairs in a fixed order.
    pub fn fields(&self) -> [(&'static str, u64); 15] {
        [
            ("found", self.found),
            ("new", self.new),
            ("invalid", self.invalid),
            ("ignore", self.ignore),
            ("insert", self.insert),
            ("insert_failed", self.insert_failed),
            ("drop", self.drop),
            ("early_drop", self.early_drop),
            ("error", self.error),
            ("expired", self.expired),
            ("clash_resolve", self.clash_resolve),
            ("search_restart", self.search_restart),
            ("delete", self.delete),
            ("unconfirmed_reaped", self.unconfirmed_reaped),
            ("helper_refused", self.helper_refused),
        ]
    }
}
