//! A `Set-Cookie`'s `Expires`, read with the cookie-date algorithm of
//! RFC 6265 §5.1.1: the way browsers read it, so the jar deletes and expires
//! what a browser would.
//!
//! Hand-written because neither crate at hand implements §5.1.1.
//! `httpdate` reads only the three HTTP-date forms. `cookie` (0.18.3, tried
//! here) matches four fixed formats: it rejects `Wed, 9 Jun 2021 10:18:14
//! GMT` (one-digit day), `Wed 09 Jun 2021 10:18:14 GMT` (no comma),
//! `Wed, 09 Jun 2021 10:18:14` (no `GMT`), `Wed, 09 jun 2021 …` (lower-case
//! month), `Sun Nov 6 08:49:37 1994` (one space) and `Wed, 09 Jun 2021
//! 1:2:3 GMT`, which §5.1.1 accepts, and it accepts year 1600, which
//! §5.1.1 rejects. A deletion the jar cannot read keeps the cookie for the
//! life of the session.
//!
//! The algorithm: split the text on delimiters into date-tokens; give each
//! token, in order, to the first of time, day-of-month, month and year that
//! is still missing and whose production it matches ("first found wins");
//! map two-digit years (70–99 → 19xx, 0–69 → 20xx); then reject a missing
//! part, day outside 1–31, year before 1601, hour over 23, minute or second
//! over 59, and a date that does not exist (31 June, 29 February 2021). The
//! productions' trailing `( non-digit *OCTET )` is optional, as RFC 6265bis
//! writes it (`09` is a day-of-month). Nothing is allocated: tokens are
//! slices of the input.

/// A date and time in UTC that passed every §5.1.1 check.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CookieDate {
    year: u16,
    month: u8,
    day: u8,
    hour: u8,
    minute: u8,
    second: u8,
}

const MONTHS: [&[u8; 3]; 12] = [
    b"jan", b"feb", b"mar", b"apr", b"may", b"jun", b"jul", b"aug", b"sep", b"oct", b"nov", b"dec",
];

/// Days in the year before the first of each month (not a leap year).
const DAYS_BEFORE_MONTH: [u16; 12] = [0, 31, 59, 90, 120, 151, 181, 212, 243, 273, 304, 334];

/// Parses a cookie-date; `None` when §5.1.1 says it fails to parse (the
/// attribute is then ignored, RFC 6265 §5.2.1).
pub fn parse(text: &str) -> Option<CookieDate> {
    let (mut time, mut day, mut month, mut year) = (None, None, None, None);
    let tokens = text.as_bytes().split(|&b| is_delimiter(b));
    for token in tokens.filter(|t| !t.is_empty()) {
        if time.is_none() {
            time = hms_time(token);
            if time.is_some() {
                continue;
            }
        }
        if day.is_none() {
            day = leading_number(token, 1, 2).map(|(n, _)| n);
            if day.is_some() {
                continue;
            }
        }
        if month.is_none() {
            month = month_of(token);
            if month.is_some() {
                continue;
            }
        }
        if year.is_none() {
            year = leading_number(token, 2, 4).map(|(n, _)| n);
        }
    }
    let ((hour, minute, second), day, month, year) = (time?, day?, month?, year?);
    let year = match year {
        70..=99 => year + 1900,
        0..=69 => year + 2000,
        _ => year,
    };
    let valid = (1..=31).contains(&day)
        && year >= 1601
        && hour <= 23
        && minute <= 59
        && second <= 59
        && day <= days_in_month(year, month);
    // Every value fits in a u8: day ≤ 31 was just checked, the time fields
    // and month are at most two digits or 1–12.
    valid.then_some(CookieDate {
        year,
        month,
        day: day as u8,
        hour: hour as u8,
        minute: minute as u8,
        second: second as u8,
    })
}

impl CookieDate {
    /// Seconds since the Unix epoch; negative before 1970.
    pub fn unix_seconds(self) -> i64 {
        let m = usize::from(self.month - 1);
        let leap_day = i64::from(self.month > 2 && is_leap(self.year));
        let days = days_before_year(i64::from(self.year)) - days_before_year(1970)
            + i64::from(DAYS_BEFORE_MONTH[m])
            + leap_day
            + i64::from(self.day)
            - 1;
        let seconds = i64::from(self.hour) * 3600 + i64::from(self.minute) * 60;
        days * 86_400 + seconds + i64::from(self.second)
    }

    /// Unix milliseconds, with any date before 1970 as 0: already past, so
    /// a cookie given it is deleted.
    pub fn unix_ms(self) -> u64 {
        // At most year 9999: about 2.5e14 ms, far inside u64.
        u64::try_from(self.unix_seconds()).map_or(0, |s| s * 1000)
    }
}

/// `delimiter = %x09 / %x20-2F / %x3B-40 / %x5B-60 / %x7B-7E`
fn is_delimiter(b: u8) -> bool {
    matches!(b, 0x09 | 0x20..=0x2f | 0x3b..=0x40 | 0x5b..=0x60 | 0x7b..=0x7e)
}

/// All the leading digits of `token` as a number, when there are `min` to
/// `max` of them, with the rest: `min*maxDIGIT [ non-digit *OCTET ]`.
fn leading_number(token: &[u8], min: usize, max: usize) -> Option<(u16, &[u8])> {
    let n = token.iter().take_while(|b| b.is_ascii_digit()).count();
    if !(min..=max).contains(&n) {
        return None;
    }
    let value = token[..n]
        .iter()
        .fold(0u16, |v, d| v * 10 + u16::from(d - b'0'));
    Some((value, &token[n..]))
}

/// `time = time-field ":" time-field ":" time-field [ non-digit *OCTET ]`
/// with `time-field = 1*2DIGIT`.
fn hms_time(token: &[u8]) -> Option<(u16, u16, u16)> {
    let (hour, rest) = leading_number(token, 1, 2)?;
    let (minute, rest) = leading_number(rest.strip_prefix(b":")?, 1, 2)?;
    let (second, _) = leading_number(rest.strip_prefix(b":")?, 1, 2)?;
    Some((hour, minute, second))
}

/// `month = ( "jan" / … / "dec" ) *OCTET`, any case; 1–12.
fn month_of(token: &[u8]) -> Option<u8> {
    let head = token.get(..3)?;
    let i = MONTHS.iter().position(|m| head.eq_ignore_ascii_case(*m))?;
    // i < 12.
    Some(i as u8 + 1)
}

fn is_leap(year: u16) -> bool {
    year.is_multiple_of(4) && (!year.is_multiple_of(100) || year.is_multiple_of(400))
}

fn days_in_month(year: u16, month: u8) -> u16 {
    match month {
        2 if is_leap(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Days from 1 January of year 1 to 1 January of `year` (≥ 1), proleptic
/// Gregorian.
fn days_before_year(year: i64) -> i64 {
    let y = year - 1;
    y * 365 + y / 4 - y / 100 + y / 400
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::{Duration, UNIX_EPOCH};

    fn secs(text: &str) -> Option<i64> {
        parse(text).map(CookieDate::unix_seconds)
    }

    /// 2021-06-09 10:18:14 UTC.
    const JUN_9_2021: i64 = 1_623_233_894;

    #[test]
    fn spellings_browsers_accept() {
        for text in [
            "Wed, 09 Jun 2021 10:18:14 GMT",
            "Wed, 09-Jun-2021 10:18:14 GMT",
            "Wednesday, 09-Jun-21 10:18:14 GMT",
            "09 Jun 2021 10:18:14 GMT",
            "Wed, 09 Jun 2021 10:18:14",
            "Wed, 9 Jun 2021 10:18:14 GMT",
            "Wed 09 Jun 2021 10:18:14 GMT",
            "Wed, 09 jun 2021 10:18:14 UTC",
            "Wed, 09 JUNE 2021 10:18:14 +0000",
            "Wed Jun  9 10:18:14 2021",
            "Wed Jun 9 10:18:14 2021",
            "2021 Jun 09 10:18:14",
            "Jun 09 21 10:18:14",
            "Wed,09/Jun/2021\t10:18:14GMT",
            ";; 09th Jun, 2021AD @ 10:18:14z !!",
        ] {
            assert_eq!(secs(text), Some(JUN_9_2021), "{text}");
        }
        assert_eq!(
            secs("Sun Nov  6 08:49:37 1994"),
            secs("Sun, 06 Nov 1994 08:49:37 GMT")
        );
        assert_eq!(secs("Thu, 01 Jan 1970 00:00:00 GMT"), Some(0));
        assert_eq!(secs("Thu, 01-Jan-70 00:00:01 GMT"), Some(1));
        assert_eq!(secs("Wed, 09 Jun 2021 1:2:3 GMT"), Some(1_623_200_523));
    }

    #[test]
    fn time_production() {
        // 1*2DIGIT per field; a third digit ends the match.
        assert_eq!(secs("9 Jun 2021 0:0:0"), Some(JUN_9_2021 - 37_094));
        assert_eq!(secs("9 Jun 2021 10:18:145"), None);
        assert_eq!(secs("9 Jun 2021 100:18:14"), None);
        assert_eq!(secs("9 Jun 2021 10:18"), None);
        // Anything after a non-digit is ignored.
        assert_eq!(secs("9 Jun 2021 10:18:14:99"), Some(JUN_9_2021));
        assert_eq!(secs("9 Jun 2021 10:18:14.5"), Some(JUN_9_2021));
    }

    #[test]
    fn first_found_wins_in_production_order() {
        // Later times, days, months and years are ignored.
        assert_eq!(
            secs("09 Jun 2021 10:18:14 01:02:03 10 Jul 1999"),
            Some(JUN_9_2021)
        );
        // Two digits are a day before they are a year; four are a year.
        assert_eq!(secs("2021 09 Jun 10:18:14"), Some(JUN_9_2021));
        assert_eq!(secs("09 21 Jun 10:18:14"), Some(JUN_9_2021));
        // Time is tried first; once found, a time-shaped token matches
        // day-of-month (two digits, then a non-digit).
        assert_eq!(secs("10:18:14 09:59:59 Jun 2021"), Some(JUN_9_2021));
        assert_eq!(secs("10:18:14 Jun 2021"), None);
        // Month names by their first three letters, any case.
        assert_eq!(secs("09 JUNK 2021 10:18:14"), Some(JUN_9_2021));
        assert_eq!(secs("09 ju 2021 10:18:14"), None);
    }

    #[test]
    fn two_digit_years() {
        let year = |y: &str| parse(&format!("01 Jan {y} 00:00:00")).map(|d| d.year);
        assert_eq!(year("70"), Some(1970));
        assert_eq!(year("99"), Some(1999));
        assert_eq!(year("00"), Some(2000));
        assert_eq!(year("69"), Some(2069));
        // The mapping is by value: three digits with the same value too.
        assert_eq!(year("070"), Some(1970));
        // A year is 2 to 4 digits: one digit is not a year, five are none.
        assert_eq!(year("0"), None);
        assert_eq!(year("02021"), None);
        assert_eq!(year("0999"), None);
    }

    #[test]
    fn invalid_dates_fail() {
        for text in [
            "",
            "GMT",
            "Jun 2021 10:18:14 GMT",
            "Wed, 09 2021 10:18:14 GMT",
            "Wed, 09 Jun 10:18:14 GMT",
            "Wed, 09 Jun 2021 GMT",
            "2021-06-09T10:18:14Z",
            "Wed, 00 Jun 2021 10:18:14 GMT",
            "Wed, 32 Jun 2021 10:18:14 GMT",
            "Wed, 31 Jun 2021 10:18:14 GMT",
            "Wed, 09 Jun 1600 10:18:14 GMT",
            "Wed, 09 Jun 2021 24:00:00 GMT",
            "Wed, 09 Jun 2021 10:60:00 GMT",
            "Wed, 09 Jun 2021 10:18:60 GMT",
            "Wed, 09 Jun 99999 10:18:14 GMT",
        ] {
            assert_eq!(parse(text), None, "{text}");
        }
    }

    #[test]
    fn leap_days() {
        assert_eq!(secs("29 Feb 2000 00:00:00"), Some(951_782_400));
        assert_eq!(secs("29 Feb 2024 00:00:00"), Some(1_709_164_800));
        assert_eq!(secs("1 Mar 2024 00:00:00"), Some(1_709_251_200));
        assert_eq!(parse("29 Feb 2021 00:00:00"), None);
        assert_eq!(parse("29 Feb 1900 00:00:00"), None);
        assert_eq!(secs("31 Dec 9999 23:59:59"), Some(253_402_300_799));
    }

    #[test]
    fn before_1970_is_in_the_past() {
        let first = parse("Mon, 01 Jan 1601 00:00:00 GMT").unwrap();
        assert_eq!(first.unix_seconds(), -11_644_473_600);
        assert_eq!(first.unix_ms(), 0);
        assert_eq!(parse("31 Dec 1969 23:59:59").unwrap().unix_ms(), 0);
        assert_eq!(parse("01 Jan 1970 00:00:01").unwrap().unix_ms(), 1000);
    }

    #[test]
    fn agrees_with_httpdate_on_rfc_1123_dates() {
        // Spread over 1970–9999 with varied times of day.
        let mut t: u64 = 0;
        while t < 253_402_300_799 {
            let at = UNIX_EPOCH + Duration::from_secs(t);
            let text = httpdate::fmt_http_date(at);
            let theirs = httpdate::parse_http_date(&text).unwrap();
            let ours = parse(&text).map(|d| UNIX_EPOCH + Duration::from_millis(d.unix_ms()));
            assert_eq!(ours, Some(theirs), "{text}");
            t += 86_413 * 97 + 1;
        }
    }
}
