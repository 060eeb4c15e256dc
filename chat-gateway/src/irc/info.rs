//! What the gateway says of itself: the ISUPPORT tokens, MOTD, VERSION, TIME, ADMIN and INFO,
//! and times as IRC shows them. The codec has no clock: the time it shows is one it was given.

use std::fmt::Write as _;

use super::codec::Identity;
use super::commands::HISTORY_MAX;

/// The gateway's name and version, as VERSION and the welcome show them.
pub(crate) const VERSION: &str = concat!("chat-server-", env!("CARGO_PKG_VERSION"));

/// The most nicks one MONITOR list holds.
pub(crate) const MONITOR_MAX: usize = 100;

/// What the codec knows beyond its identity: what its driver gave it, and what it learned.
#[derive(Debug, Clone, Default)]
pub(crate) struct Server {
    /// The message of the day, line by line, if the driver gave one.
    pub(crate) motd: Option<Vec<String>>,
    /// The latest wall-clock time known, in ms since the Unix epoch (0: none yet).
    pub(crate) time_ms: u64,
    /// The longest nick, once a welcome has said it.
    pub(crate) nicklen: u32,
    /// Whether the codec has its lanes for capabilities that change broadcasts
    /// ([`super::IrcCodec::add_to`]): without them, those are not offered.
    pub(crate) views: bool,
}

impl Server {
    /// A time the codec was given or saw (an entry's): the latest one counts.
    pub(crate) fn saw_time(&mut self, unix_ms: u64) {
        self.time_ms = self.time_ms.max(unix_ms);
    }
}

/// The RPL_ISUPPORT lines for `me`: only what is true of this gateway, at most 12 tokens a
/// line (a line holds at most 15 parameters).
pub(crate) fn isupport(out: &mut Vec<String>, host: &str, me: &str, nicklen: u32) {
    let tokens = tokens(nicklen);
    let tokens: Vec<&str> = tokens.split(' ').collect();
    for chunk in tokens.chunks(12) {
        let chunk = chunk.join(" ");
        out.push(format!(
            ":{host} 005 {me} {chunk} :are supported by this server"
        ));
    }
}

/// The RPL_ISUPPORT tokens.
fn tokens(nicklen: u32) -> String {
    format!(
        "AWAYLEN=200 CASEMAPPING=rfc8265 CHANLIMIT=#:1 CHANMODES=,,,nt CHANNELLEN=50 CHANTYPES=# \
         CHATHISTORY={HISTORY_MAX} CLIENTTAGDENY=* MAXTARGETS=1 MONITOR={MONITOR_MAX} \
         MSGREFTYPES=timestamp NETWORK=chat NICKLEN={nicklen} PREFIX= WHOX"
    )
}

/// MOTD: the driver's text in 372 lines between 375 and 376, or 422 without one.
pub(crate) fn motd(out: &mut Vec<String>, id: &Identity, srv: &Server, me: &str) {
    let host = &id.server;
    let Some(lines) = &srv.motd else {
        out.push(format!(":{host} 422 {me} :MOTD File is missing"));
        return;
    };
    out.push(format!(":{host} 375 {me} :- {host} Message of the day -"));
    for line in lines {
        out.push(format!(":{host} 372 {me} :- {line}"));
    }
    out.push(format!(":{host} 376 {me} :End of /MOTD command."));
}

/// The MOTD text as lines IRC can carry: no control characters, at most 400 bytes each, and
/// at most 100 lines.
pub(crate) fn motd_lines(text: &str) -> Vec<String> {
    text.lines()
        .take(100)
        .map(|line| {
            let clean: String = line.chars().filter(|c| !c.is_control()).collect();
            let mut end = clean.len().min(400);
            while !clean.is_char_boundary(end) {
                end -= 1;
            }
            clean[..end].to_owned()
        })
        .collect()
}

/// VERSION, TIME, ADMIN and INFO: the lines that answer `cmd`.
pub(crate) fn about(out: &mut Vec<String>, cmd: &str, id: &Identity, srv: &Server, me: &str) {
    let host = &id.server;
    match cmd {
        "VERSION" => {
            out.push(format!(
                ":{host} 351 {me} {VERSION}. {host} :a gateway to one chat room"
            ));
            isupport(out, host, me, srv.nicklen);
        }
        "TIME" => {
            let shown = match srv.time_ms {
                0 => "unknown".to_owned(),
                ms => utc(ms),
            };
            out.push(format!(":{host} 391 {me} {host} :{shown}"));
        }
        "ADMIN" => {
            out.push(format!(":{host} 256 {me} {host} :Administrative info"));
            out.push(format!(":{host} 257 {me} :A gateway to one chat room"));
            out.push(format!(":{host} 258 {me} :{}", id.channel));
            out.push(format!(
                ":{host} 259 {me} :No administrator address is given"
            ));
        }
        _ => {
            out.push(format!(":{host} 371 {me} :{VERSION}"));
            out.push(format!(
                ":{host} 371 {me} :One room, {}, shared with native and web clients",
                id.channel
            ));
            out.push(format!(":{host} 374 {me} :End of INFO list"));
        }
    }
}

/// The civil date and time of `unix_ms` in UTC: (year, month, day, hour, minute, second).
pub(crate) fn civil(unix_ms: u64) -> (i64, u32, u32, u32, u32, u32) {
    let secs = unix_ms / 1000;
    let (days, rem) = ((secs / 86_400) as i64, (secs % 86_400) as u32);
    // Howard Hinnant's days-to-civil.
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let month = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    let year = yoe + era * 400 + i64::from(month <= 2);
    (year, month, day, rem / 3600, rem / 60 % 60, rem % 60)
}

/// `unix_ms` as `2026-12-03 19:30:00 UTC`.
pub(crate) fn utc(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_ms);
    format!("{y:04}-{mo:02}-{d:02} {h:02}:{mi:02}:{s:02} UTC")
}

/// A server-time timestamp (`2023-11-14T22:13:20.123Z`, the fraction optional) in ms since
/// the Unix epoch; `None` if it is not one.
pub(crate) fn parse_server_time(text: &str) -> Option<u64> {
    let text = text.strip_suffix('Z')?;
    let (date, time) = text.split_once('T')?;
    let mut date = date.splitn(3, '-').map(|p| p.parse::<i64>().ok());
    let (y, m, d) = (date.next()??, date.next()??, date.next()??);
    let (hms, frac) = time.split_once('.').unwrap_or((time, "0"));
    let mut hms = hms.splitn(3, ':').map(|p| p.parse::<u64>().ok());
    let (h, mi, sec) = (hms.next()??, hms.next()??, hms.next()??);
    let valid = (1..=12).contains(&m) && (1..=31).contains(&d) && h < 24 && mi < 60 && sec < 61;
    if !valid || !(1970..=9999).contains(&y) || frac.is_empty() || frac.len() > 9 {
        return None;
    }
    let ms: u64 = format!("{frac:0<3}")[..3].parse().ok()?;
    // Howard Hinnant's days-from-civil.
    let y = y - i64::from(m <= 2);
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = u64::try_from(era * 146_097 + doe - 719_468).ok()?;
    Some(((days * 24 + h) * 60 + mi) * 60_000 + sec * 1000 + ms)
}

/// Whether `text` matches the glob `mask` (`*` any run, `?` one character), ignoring case.
pub(crate) fn glob(mask: &str, text: &str) -> bool {
    let mask: Vec<char> = mask.chars().flat_map(char::to_lowercase).collect();
    let text: Vec<char> = text.chars().flat_map(char::to_lowercase).collect();
    let (mut m, mut t) = (0, 0);
    let mut star: Option<(usize, usize)> = None;
    while t < text.len() {
        if m < mask.len() && (mask[m] == '?' || mask[m] == text[t]) {
            m += 1;
            t += 1;
        } else if m < mask.len() && mask[m] == '*' {
            star = Some((m, t));
            m += 1;
        } else if let Some((sm, st)) = star {
            m = sm + 1;
            t = st + 1;
            star = Some((sm, st + 1));
        } else {
            return false;
        }
    }
    mask[m..].iter().all(|&c| c == '*')
}

/// `unix_ms` as IRCv3's server-time: `2026-12-03T19:30:00.123Z`.
pub(crate) fn server_time(unix_ms: u64) -> String {
    let (y, mo, d, h, mi, s) = civil(unix_ms);
    let mut out = String::with_capacity(24);
    let _ = write!(
        out,
        "{y:04}-{mo:02}-{d:02}T{h:02}:{mi:02}:{s:02}.{:03}Z",
        unix_ms % 1000
    );
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_show_in_utc() {
        assert_eq!(utc(0), "1970-01-01 00:00:00 UTC");
        assert_eq!(server_time(1_700_000_000_123), "2023-11-14T22:13:20.123Z");
        assert_eq!(utc(1_700_000_000_123), "2023-11-14 22:13:20 UTC");
        assert_eq!(utc(951_782_400_000), "2000-02-29 00:00:00 UTC");
        for ms in [0, 951_782_400_000, 1_700_000_000_123] {
            assert_eq!(parse_server_time(&server_time(ms)), Some(ms));
        }
        assert_eq!(
            parse_server_time("2023-11-14T22:13:20Z"),
            Some(1_700_000_000_000)
        );
        assert_eq!(parse_server_time("2023-13-14T22:13:20Z"), None);
        assert_eq!(parse_server_time("yesterday"), None);
    }

    #[test]
    fn globs_match_ignoring_case() {
        assert!(glob("coolni*", "CoolNick"));
        assert!(glob("*", ""));
        assert!(glob("c?ol*k", "cool-nick"));
        assert!(glob("*a*b", "xaxxab"));
        assert!(!glob("coolni*", "coolbob"));
        assert!(!glob("a?", "a"));
        assert!(glob("ÉL*", "élan"));
    }

    #[test]
    fn a_motd_is_cut_to_lines_irc_can_carry() {
        let text = format!("hello\x07 there\n{}\n", "é".repeat(300));
        let lines = motd_lines(&text);
        assert_eq!(lines[0], "hello there");
        assert!(lines[1].len() <= 400 && lines[1].starts_with('é'));
    }
}
