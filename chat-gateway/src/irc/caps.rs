//! IRCv3 capabilities: which the gateway offers, and which one connection turned on.

/// One capability, as a bit of [`Caps`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Cap(u16);

impl Cap {
    pub(crate) const CAP_NOTIFY: Cap = Cap(1 << 0);
    pub(crate) const SERVER_TIME: Cap = Cap(1 << 1);
    pub(crate) const MESSAGE_TAGS: Cap = Cap(1 << 2);
    pub(crate) const ECHO_MESSAGE: Cap = Cap(1 << 3);
    pub(crate) const BATCH: Cap = Cap(1 << 4);
    pub(crate) const LABELED_RESPONSE: Cap = Cap(1 << 5);
    pub(crate) const AWAY_NOTIFY: Cap = Cap(1 << 6);
    pub(crate) const MULTI_PREFIX: Cap = Cap(1 << 7);
    pub(crate) const USERHOST_IN_NAMES: Cap = Cap(1 << 8);
    pub(crate) const STANDARD_REPLIES: Cap = Cap(1 << 9);
    pub(crate) const CHATHISTORY: Cap = Cap(1 << 10);
}

/// Every capability offered, by name, in the order `CAP LS` lists them.
pub(crate) const OFFERED: [(&str, Cap); 11] = [
    ("cap-notify", Cap::CAP_NOTIFY),
    ("server-time", Cap::SERVER_TIME),
    ("message-tags", Cap::MESSAGE_TAGS),
    ("echo-message", Cap::ECHO_MESSAGE),
    ("batch", Cap::BATCH),
    ("labeled-response", Cap::LABELED_RESPONSE),
    ("away-notify", Cap::AWAY_NOTIFY),
    ("multi-prefix", Cap::MULTI_PREFIX),
    ("userhost-in-names", Cap::USERHOST_IN_NAMES),
    ("standard-replies", Cap::STANDARD_REPLIES),
    ("draft/chathistory", Cap::CHATHISTORY),
];

/// The capabilities that change the bytes of a broadcast: a connection with them is served
/// by another lane of the codec (its variant), chosen when it registers.
pub(crate) const LANE_CAPS: [Cap; 2] = [Cap::SERVER_TIME, Cap::AWAY_NOTIFY];

/// How many lanes the IRC codec uses: one per combination of [`LANE_CAPS`].
pub(crate) const VARIANTS: usize = 1 << LANE_CAPS.len();

/// The capabilities one connection turned on.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Caps(u16);

impl Caps {
    pub(crate) fn has(self, cap: Cap) -> bool {
        self.0 & cap.0 != 0
    }

    pub(crate) fn set(&mut self, cap: Cap, on: bool) {
        if on {
            self.0 |= cap.0;
        } else {
            self.0 &= !cap.0;
        }
    }

    /// The lane variant these capabilities need: bit `i` for `LANE_CAPS[i]`.
    pub(crate) fn variant(self) -> usize {
        LANE_CAPS
            .iter()
            .enumerate()
            .filter(|(_, c)| self.has(**c))
            .map(|(i, _)| 1 << i)
            .sum()
    }

    /// The variant's capabilities.
    pub(crate) fn of_variant(variant: usize) -> Caps {
        let mut caps = Caps::default();
        for (i, cap) in LANE_CAPS.iter().enumerate() {
            caps.set(*cap, variant & (1 << i) != 0);
        }
        caps
    }

    /// The names of those on, space-separated.
    pub(crate) fn names(self) -> String {
        let on: Vec<&str> = OFFERED
            .iter()
            .filter(|(_, c)| self.has(*c))
            .map(|(n, _)| *n)
            .collect();
        on.join(" ")
    }
}

/// The capability named `name`, if offered.
pub(crate) fn by_name(name: &str) -> Option<Cap> {
    OFFERED
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case(name))
        .map(|(_, c)| *c)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_combination_of_lane_caps_is_one_variant() {
        let mut caps = Caps::default();
        assert_eq!(caps.variant(), 0);
        caps.set(Cap::ECHO_MESSAGE, true);
        assert_eq!(caps.variant(), 0);
        caps.set(Cap::AWAY_NOTIFY, true);
        assert_eq!(caps.variant(), 2);
        caps.set(Cap::SERVER_TIME, true);
        assert_eq!(caps.variant(), 3);
        for v in 0..VARIANTS {
            assert_eq!(Caps::of_variant(v).variant(), v);
        }
        assert_eq!(by_name("Server-Time"), Some(Cap::SERVER_TIME));
        assert_eq!(by_name("sasl"), None);
    }
}
