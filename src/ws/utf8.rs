//! Incremental UTF-8 validation for text messages that arrive in pieces (partial frames,
//! fragments).
//!
//! Built on `std::str::from_utf8` (SIMD-friendly, well tested): `error_len() == None` means the
//! input ended inside a character that may still be completed, and those ≤ 3 bytes are carried
//! into the next [`Utf8Validator::feed`]. Invariant: `carry` always holds a strict prefix of a
//! valid encoded character (so its lead byte gives the full width), never more than 3 bytes.
//! Fails fast: an invalid sequence is reported as soon as its first bad byte is fed.

/// Streaming validator for one text message. `Copy`-sized, never allocates.
#[derive(Debug, Clone, Copy, Default)]
pub struct Utf8Validator {
    carry: [u8; 4],
    carry_len: u8,
}

/// The bytes fed so far cannot be the start of any valid UTF-8 text.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Invalid;

impl Utf8Validator {
    /// A validator at a character boundary.
    pub const fn new() -> Utf8Validator {
        Utf8Validator {
            carry: [0; 4],
            carry_len: 0,
        }
    }

    /// Validates the next piece of the message.
    pub fn feed(&mut self, mut s: &[u8]) -> Result<(), Invalid> {
        if self.carry_len > 0 {
            let have = self.carry_len as usize;
            let width = char_width(self.carry[0]);
            let take = (width - have).min(s.len());
            self.carry[have..have + take].copy_from_slice(&s[..take]);
            let have = have + take;
            s = &s[take..];
            match std::str::from_utf8(&self.carry[..have]) {
                Ok(_) => self.carry_len = 0,
                Err(e) if e.error_len().is_some() => return Err(Invalid),
                Err(_) => {
                    // Still a valid prefix; `s` is exhausted (take < width - have only if so).
                    self.carry_len = have as u8;
                    return Ok(());
                }
            }
        }
        match std::str::from_utf8(s) {
            Ok(_) => Ok(()),
            Err(e) if e.error_len().is_some() => Err(Invalid),
            Err(e) => {
                let tail = &s[e.valid_up_to()..];
                self.carry[..tail.len()].copy_from_slice(tail);
                self.carry_len = tail.len() as u8;
                Ok(())
            }
        }
    }

    /// True when everything fed ends on a character boundary (required at the end of a message).
    pub fn is_complete(&self) -> bool {
        self.carry_len == 0
    }

    /// Forgets any carried partial character (start of a new message).
    pub fn reset(&mut self) {
        self.carry_len = 0;
    }
}

/// Encoded width announced by a lead byte that `from_utf8` accepted as a valid prefix.
fn char_width(lead: u8) -> usize {
    match lead {
        0xC0..=0xDF => 2,
        0xE0..=0xEF => 3,
        _ => 4,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn feed_split(bytes: &[u8], at: &[usize]) -> Result<bool, Invalid> {
        let mut v = Utf8Validator::new();
        let mut prev = 0;
        for &a in at.iter().chain(std::iter::once(&bytes.len())) {
            v.feed(&bytes[prev..a])?;
            prev = a;
        }
        Ok(v.is_complete())
    }

    #[test]
    fn valid_text_split_at_every_byte_is_accepted() {
        let s = "κόσμε a€𝄞 z".as_bytes();
        for i in 0..=s.len() {
            for j in i..=s.len() {
                assert_eq!(feed_split(s, &[i, j]), Ok(true), "split {i} {j}");
            }
        }
        let every: Vec<usize> = (1..s.len()).collect();
        assert_eq!(feed_split(s, &every), Ok(true));
    }

    #[test]
    fn incomplete_tail_is_not_complete() {
        assert_eq!(feed_split(&[b'a', 0xF0, 0x9D], &[]), Ok(false));
        assert_eq!(feed_split(&[b'a', 0xF0, 0x9D], &[2]), Ok(false));
    }

    #[test]
    fn invalid_sequence_fails_fast_across_pieces() {
        // 0xF4 0x90 is beyond U+10FFFF: invalid at the second byte, whichever the split.
        let mut v = Utf8Validator::new();
        v.feed(b"ok\xF4").unwrap();
        assert_eq!(v.feed(b"\x90"), Err(Invalid));
        assert_eq!(
            feed_split(
                b"\xCE\xBA\xE1\xBD\xB9\xCF\x83\xCE\xBC\xCE\xB5\xED\xA0\x80",
                &[12]
            ),
            Err(Invalid)
        );
        assert_eq!(feed_split(b"\xC0\xAF", &[1]), Err(Invalid));
        assert_eq!(feed_split(b"\xFF", &[]), Err(Invalid));
    }

    #[test]
    fn carry_completed_then_invalid_rest_fails() {
        assert_eq!(feed_split("é".as_bytes(), &[1]), Ok(true));
        let mut v = Utf8Validator::new();
        v.feed(&[0xC3]).unwrap();
        assert_eq!(v.feed(&[0xA9, 0xFF]), Err(Invalid));
    }
}
