//! The answers built from the room's member list: NAMES, WHO (masks, WHOX), WHOIS, USERHOST,
//! ISON, MONITOR, LIST, LUSERS, and a private message's refusal.

use std::borrow::Cow;

use chat_core::fold_name;
use chat_proto::Member;

use super::caps::{Cap, Caps};
use super::codec::{Identity, irc_nick, names_lines, push};
use super::commands::Listing;
use super::info::glob;

/// The answer to the command that asked for the member list.
pub(crate) fn members(
    out: &mut Vec<u8>,
    id: &Identity,
    caps: Caps,
    me: &str,
    listing: Listing,
    list: &[Member],
) {
    let srv = id.server.as_str();
    let nicks = || list.iter().map(|m| (irc_nick(&m.name), m));
    let same = |a: &str, b: &str| fold_name(a) == fold_name(b);
    let online = |asked: &str| nicks().find(|(n, _)| same(n, asked)).map(|(n, _)| n);
    match listing {
        Listing::Names | Listing::Join => {
            if listing == Listing::Join {
                push(out, format_args!(":{me}!{me}@{srv} JOIN {}", id.channel));
            }
            // userhost-in-names: nick!user@host for each.
            let full = caps.has(Cap::USERHOST_IN_NAMES);
            let nicks: Vec<Cow<'_, str>> = nicks()
                .map(|(n, m)| match full {
                    true => Cow::Owned(format!("{n}!{}@{srv}", user_of(&n, m).0)),
                    false => n,
                })
                .collect();
            names_lines(out, id, me, &nicks);
        }
        Listing::Who { mask, whox } => who(out, id, me, &mask, whox.as_ref(), list),
        Listing::Whois(nick) => whois(out, id, me, &nick, list),
        Listing::Userhost(asked) => {
            let found: Vec<String> = nicks()
                .filter(|(n, _)| asked.iter().any(|a| same(n, a)))
                .map(|(n, m)| {
                    let here = if m.away.is_some() { '-' } else { '+' };
                    format!("{n}={here}{}@{srv}", user_of(&n, m).0)
                })
                .collect();
            push(out, format_args!(":{srv} 302 {me} :{}", found.join(" ")));
        }
        Listing::Ison(asked) => {
            let found: Vec<Cow<'_, str>> = asked.iter().filter_map(|a| online(a)).collect();
            push(out, format_args!(":{srv} 303 {me} :{}", found.join(" ")));
        }
        Listing::Monitor(asked) => {
            let (on, off): (Vec<&String>, Vec<&String>) =
                asked.iter().partition(|a| online(a).is_some());
            for chunk in on.chunks(10) {
                let targets: Vec<String> = chunk
                    .iter()
                    .filter_map(|a| online(a))
                    .map(|n| format!("{n}!{n}@{srv}"))
                    .collect();
                push(out, format_args!(":{srv} 730 {me} :{}", targets.join(",")));
            }
            for chunk in off.chunks(10) {
                let targets: Vec<&str> = chunk.iter().map(|s| s.as_str()).collect();
                push(out, format_args!(":{srv} 731 {me} :{}", targets.join(",")));
            }
        }
        Listing::List => {
            push(out, format_args!(":{srv} 321 {me} Channel :Users  Name"));
            push(
                out,
                format_args!(":{srv} 322 {me} {} {} :", id.channel, list.len()),
            );
            push(out, format_args!(":{srv} 323 {me} :End of /LIST"));
        }
        Listing::Lusers => lusers(out, id, me, list.len()),
        Listing::Private { target } => private(out, id, me, &target, list),
    }
}

/// WHO: the channel's members, or those whose nick, user name or real name match `mask`; as
/// 352 lines, or as WHOX's 354 lines of the fields asked for.
fn who(
    out: &mut Vec<u8>,
    id: &Identity,
    me: &str,
    mask: &str,
    whox: Option<&(String, String)>,
    list: &[Member],
) {
    let srv = id.server.as_str();
    let whole = mask.eq_ignore_ascii_case(&id.channel);
    let chan = if whole { id.channel.as_str() } else { "*" };
    for member in list {
        let nick = irc_nick(&member.name);
        let (user, real) = user_of(&nick, member);
        let matches = whole || glob(mask, &nick) || glob(mask, user) || glob(mask, real);
        if !matches {
            continue;
        }
        let here = if member.away.is_some() { 'G' } else { 'H' };
        let Some((fields, token)) = whox else {
            push(
                out,
                format_args!(":{srv} 352 {me} {chan} {user} {srv} {srv} {nick} {here} :0 {real}"),
            );
            continue;
        };
        let mut line = format!(":{srv} 354 {me}");
        // The fields go in WHOX's fixed order, whatever order they were asked in.
        for field in "tcuihsnfdlaor".chars().filter(|f| fields.contains(*f)) {
            line.push(' ');
            match field {
                't' => line.push_str(if token.is_empty() { "0" } else { token }),
                'c' => line.push_str(&id.channel),
                'u' => line.push_str(user),
                'i' => line.push_str("255.255.255.255"),
                'h' | 's' => line.push_str(srv),
                'n' => line.push_str(&nick),
                'f' => line.push(here),
                'd' | 'l' | 'a' => line.push('0'),
                'o' => line.push_str("n/a"),
                _ => {
                    line.push(':');
                    line.push_str(real);
                }
            }
        }
        push(out, format_args!("{line}"));
    }
    push(
        out,
        format_args!(":{srv} 315 {me} {mask} :End of /WHO list."),
    );
}

/// WHOIS: who has `nick`, where, and whether away; 401 if nobody.
fn whois(out: &mut Vec<u8>, id: &Identity, me: &str, nick: &str, list: &[Member]) {
    let srv = id.server.as_str();
    let found = list
        .iter()
        .find(|m| fold_name(&irc_nick(&m.name)) == fold_name(nick));
    if let Some(member) = found {
        let n = irc_nick(&member.name);
        let (user, real) = user_of(&n, member);
        push(
            out,
            format_args!(":{srv} 311 {me} {n} {user} {srv} * :{real}"),
        );
        push(out, format_args!(":{srv} 319 {me} {n} :{}", id.channel));
        push(
            out,
            format_args!(":{srv} 312 {me} {n} {srv} :a gateway to one chat room"),
        );
        if let Some(away) = &member.away {
            push(out, format_args!(":{srv} 301 {me} {n} :{away}"));
        }
    } else {
        push(
            out,
            format_args!(":{srv} 401 {me} {nick} :No such nick/channel"),
        );
    }
    push(
        out,
        format_args!(":{srv} 318 {me} {nick} :End of /WHOIS list."),
    );
}

/// LUSERS: everyone is a user of this one server, in one channel.
fn lusers(out: &mut Vec<u8>, id: &Identity, me: &str, count: usize) {
    let srv = id.server.as_str();
    push(
        out,
        format_args!(":{srv} 251 {me} :There are {count} users and 0 invisible on 1 servers"),
    );
    push(out, format_args!(":{srv} 254 {me} 1 :channels formed"));
    push(
        out,
        format_args!(":{srv} 255 {me} :I have {count} clients and 0 servers"),
    );
    push(
        out,
        format_args!(":{srv} 265 {me} {count} {count} :Current local users {count}, max {count}"),
    );
    push(
        out,
        format_args!(":{srv} 266 {me} {count} {count} :Current global users {count}, max {count}"),
    );
}

/// The user name and real name a member gave in USER; its nick for both if it gave none.
fn user_of<'m>(nick: &'m str, member: &'m Member) -> (&'m str, &'m str) {
    match &member.ident {
        Some(ident) => (
            if ident.user.is_empty() {
                nick
            } else {
                &ident.user
            },
            &ident.realname,
        ),
        None => (nick, nick),
    }
}

/// A private message to `target`: 401 if nobody has the nick; else 301 if it is away, and a
/// numeric saying private messages are not carried.
fn private(out: &mut Vec<u8>, id: &Identity, me: &str, target: &str, list: &[Member]) {
    let srv = id.server.as_str();
    let found = list
        .iter()
        .find(|m| fold_name(&irc_nick(&m.name)) == fold_name(target));
    let Some(member) = found else {
        push(
            out,
            format_args!(":{srv} 401 {me} {target} :No such nick/channel"),
        );
        return;
    };
    if let Some(away) = &member.away {
        push(out, format_args!(":{srv} 301 {me} {target} :{away}"));
    }
    push(
        out,
        format_args!(
            ":{srv} 404 {me} {target} :Private messages are not carried here; write to {}",
            id.channel
        ),
    );
}
