//! Validation of names and chat text, and the folding that makes look-alike names collide.

use chat_proto::{ErrorKind, Ident, NameRule};
use unicode_normalization::UnicodeNormalization;
use unicode_security::{RestrictionLevel, RestrictionLevelDetection};

/// Characters that draw nothing or reorder text: zero-width spaces and joiners, bidi
/// embeddings, overrides and isolates, invisible operators, tag characters, the byte-order mark,
/// variation selectors and fillers. Covers Unicode's format category (Cf) and default-ignorables
/// that could make two names look alike.
pub fn is_invisible(c: char) -> bool {
    matches!(c,
        '\u{00AD}' | '\u{034F}' | '\u{061C}' | '\u{115F}' | '\u{1160}' | '\u{17B4}' | '\u{17B5}'
        | '\u{180B}'..='\u{180F}' | '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}'
        | '\u{2060}'..='\u{206F}' | '\u{3164}' | '\u{FE00}'..='\u{FE0F}' | '\u{FEFF}'
        | '\u{FFA0}' | '\u{FFF0}'..='\u{FFFB}' | '\u{0600}'..='\u{0605}' | '\u{06DD}'
        | '\u{070F}' | '\u{08E2}' | '\u{110BD}' | '\u{110CD}' | '\u{13430}'..='\u{1343F}'
        | '\u{1BCA0}'..='\u{1BCA3}' | '\u{1D173}'..='\u{1D17A}' | '\u{E0000}'..='\u{E0FFF}')
}

/// Checks a wanted name against the rules; returns the rule it breaks, if any.
pub fn check_name(name: &str, max_chars: u32) -> Result<(), NameRule> {
    if name.is_empty() {
        return Err(NameRule::Empty);
    }
    if name.chars().count() > max_chars as usize {
        return Err(NameRule::TooLong { max_chars });
    }
    if name.chars().any(char::is_control) {
        return Err(NameRule::Control);
    }
    if name.chars().any(char::is_whitespace) {
        return Err(NameRule::Whitespace);
    }
    if name.chars().any(is_invisible) {
        return Err(NameRule::Invisible);
    }
    // Letters from several scripts (Latin with a Cyrillic 'а', say) are how a look-alike is made;
    // UTS #39 allows Latin mixed only with Han, Hiragana, Katakana or Hangul ("highly
    // restrictive"). Digits, punctuation and symbols are not letters and do not count; letters
    // are judged in their compatibility form (a fullwidth 'ｚ' is a Latin 'z').
    let letters: String = name.nfkc().filter(|c| c.is_alphabetic()).collect();
    if letters.as_str().detect_restriction_level() > RestrictionLevel::HighlyRestrictive {
        return Err(NameRule::MixedScript);
    }
    Ok(())
}

/// The key under which a name is unique: compatibility-normalised and case-folded (NFKC, full
/// Unicode case folding), then reduced to its UTS #39 confusable skeleton and folded again, so
/// `Alice`, `ALICE`, `ａｌｉｃｅ`, decomposed accents, a dotless `ı` for `i` and a name spelled
/// wholly in Cyrillic look-alikes all fold to one key.
pub fn fold_name(name: &str) -> String {
    let nfkc: String = name.nfkc().collect();
    let folded = caseless::default_case_fold_str(&nfkc);
    let skeleton: String = unicode_security::skeleton(&folded).collect();
    caseless::default_case_fold_str(&skeleton).nfkc().collect()
}

/// The form a valid name is registered and shown in: canonically composed (NFC).
pub fn display_name(name: &str) -> String {
    name.nfc().collect()
}

/// Checks chat text against the rules; returns the error to send back, if any.
///
/// Text is one line: control characters, line and paragraph separators, and bidi embeddings,
/// overrides and isolates (which could make a line read as if someone else wrote it) are refused.
/// Text with nothing visible in it counts as empty.
pub fn check_text(text: &str, max_bytes: u32) -> Result<(), ErrorKind> {
    if text.len() > max_bytes as usize {
        return Err(ErrorKind::TextTooLong { max_bytes });
    }
    if text.chars().all(|c| c.is_whitespace() || is_invisible(c)) {
        return Err(ErrorKind::TextEmpty);
    }
    let breaks_the_line = |c: char| {
        c.is_control()
            || matches!(c, '\u{2028}' | '\u{2029}' | '\u{202A}'..='\u{202E}' | '\u{2066}'..='\u{2069}')
    };
    if text.chars().any(breaks_the_line) {
        return Err(ErrorKind::TextInvalid);
    }
    Ok(())
}

/// Whether an ident may be kept with a member: the user name one word under the rules of a
/// name, at most [`Ident::MAX_USER_BYTES`]; the real name empty, or one line under the rules of
/// chat text, at most [`Ident::MAX_REALNAME_BYTES`].
pub fn check_ident(ident: &Ident) -> bool {
    ident.user.len() <= Ident::MAX_USER_BYTES as usize
        && check_name(&ident.user, Ident::MAX_USER_BYTES).is_ok()
        && (ident.realname.is_empty()
            || check_text(&ident.realname, Ident::MAX_REALNAME_BYTES).is_ok())
}
