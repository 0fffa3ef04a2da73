//! A shell session's screen as asciicast v2: the header line, then one
//! `[seconds, "o", text]` line per output and `[seconds, "r", "COLSxROWS"]`
//! per resize, read off the session's frames where it is recorded: as
//! they pass the server (a web console session), or on the computer (a
//! session sealed end to end, whose recording the agent seals with age).
//! What the operator typed (stdin frames) is never written. The text is
//! gzip-compressed in members that [`Cast::take_chunk`] hands out: each is
//! a whole gzip stream, and their concatenation is one valid gzip file, so
//! a recording cut short after any chunk is still readable. Pure: no I/O.

#![forbid(unsafe_code)]

use bytes::BytesMut;
use doorman_wire::frame::Frame;
use doorman_wire::message::SessionMessage;
use flate2::Compression;
use flate2::write::GzEncoder;
use std::io::Write;
use std::time::Duration;

/// Which way bytes were going.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Direction {
    ToComputer,
    ToOperator,
}

/// What a recording is of, for its header.
#[derive(Clone, Debug)]
pub struct Screen {
    pub term: String,
    pub cols: u16,
    pub rows: u16,
    /// Seconds since the Unix epoch when the session started.
    pub timestamp: i64,
}

/// The recording being made.
pub struct Cast {
    member: GzEncoder<Vec<u8>>,
    /// Uncompressed bytes in the current member.
    member_size: usize,
    /// Uncompressed bytes so far, and their SHA-256.
    size: u64,
    digest: ring::digest::Context,
    /// The most `size` may reach; past it nothing more is recorded.
    max_size: u64,
    truncated: bool,
    to_computer: Stream,
    to_operator: Stream,
    /// The start of a UTF-8 character split across two outputs.
    partial_char: Vec<u8>,
}

/// Frames arriving one way, possibly split across reads.
#[derive(Default)]
struct Stream {
    pending: BytesMut,
    /// The bytes stopped parsing as frames: nothing more is read from them.
    broken: bool,
}

/// What a finished recording measured.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Summary {
    /// Bytes of the asciicast text, uncompressed.
    pub size: u64,
    /// Its SHA-256, in hex.
    pub sha256: String,
    /// It reached its size limit and the rest of the session went
    /// unrecorded.
    pub truncated: bool,
}

/// What the marker event of a truncated recording says.
pub const TRUNCATED: &str = "truncated: the recording reached its size limit";
/// Room kept under the limit for the marker line.
const MARKER_ROOM: u64 = 128;

impl Cast {
    /// A recording of `screen` that holds at most `max_size` bytes of
    /// asciicast text.
    pub fn new(screen: &Screen, max_size: u64) -> Cast {
        let mut cast = Cast {
            member: GzEncoder::new(Vec::new(), Compression::default()),
            member_size: 0,
            size: 0,
            digest: ring::digest::Context::new(&ring::digest::SHA256),
            max_size,
            truncated: false,
            to_computer: Stream::default(),
            to_operator: Stream::default(),
            partial_char: Vec::new(),
        };
        let header = serde_json::json!({
            "version": 2,
            "width": screen.cols,
            "height": screen.rows,
            "timestamp": screen.timestamp,
            "env": { "TERM": screen.term },
        });
        cast.write_line(&header.to_string());
        cast
    }

    /// Takes bytes that passed `at` into the session (encoded frames, as
    /// they go on the wire).
    pub fn observe(&mut self, direction: Direction, bytes: &[u8], at: Duration) {
        if self.truncated {
            return;
        }
        let stream = match direction {
            Direction::ToComputer => &mut self.to_computer,
            Direction::ToOperator => &mut self.to_operator,
        };
        if stream.broken {
            return;
        }
        stream.pending.extend_from_slice(bytes);
        let mut frames = Vec::new();
        loop {
            match Frame::decode(&mut stream.pending) {
                Ok(Some(frame)) => frames.push(frame),
                Ok(None) => break,
                Err(_) => {
                    stream.broken = true;
                    stream.pending = BytesMut::new();
                    break;
                }
            }
        }
        for frame in frames {
            match (direction, frame) {
                (Direction::ToOperator, Frame::Stdout(data) | Frame::Stderr(data)) => {
                    self.output(&data, at);
                }
                (Direction::ToComputer, Frame::Message(json)) => {
                    if let Ok(SessionMessage::Resize { rows, cols }) = serde_json::from_slice(&json)
                    {
                        self.resized(rows, cols, at);
                    }
                }
                _ => {}
            }
        }
    }

    /// The screen resized to `cols` × `rows`, `at` into the session.
    pub fn resized(&mut self, rows: u16, cols: u16, at: Duration) {
        self.event(at, "r", &format!("{cols}x{rows}"));
    }

    /// Writes output as text: whole characters only, a character split
    /// between two outputs waits for its end, bytes that are not UTF-8
    /// become U+FFFD.
    pub fn output(&mut self, data: &[u8], at: Duration) {
        if self.truncated {
            return;
        }
        let mut bytes = std::mem::take(&mut self.partial_char);
        bytes.extend_from_slice(data);
        let cut = match std::str::from_utf8(&bytes) {
            Ok(_) => bytes.len(),
            // An incomplete character at the end: keep it for next time.
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => bytes.len(),
        };
        self.partial_char = bytes.split_off(cut);
        if !bytes.is_empty() {
            self.event(at, "o", &String::from_utf8_lossy(&bytes));
        }
    }

    fn event(&mut self, at: Duration, code: &str, text: &str) {
        if self.truncated {
            return;
        }
        // Microseconds: f64 holds them exactly for centuries.
        #[allow(clippy::cast_precision_loss)]
        let seconds = at.as_micros() as f64 / 1e6;
        let line = serde_json::json!([seconds, code, text]).to_string();
        let after = self.size + line.len() as u64 + 1;
        if after.saturating_add(MARKER_ROOM) > self.max_size {
            self.truncated = true;
            // A marker event (asciicast v2 "m"), which players show.
            let marker = serde_json::json!([seconds, "m", TRUNCATED]).to_string();
            self.write_line(&marker);
            return;
        }
        self.write_line(&line);
    }

    fn write_line(&mut self, line: &str) {
        for part in [line.as_bytes(), b"\n"] {
            // Writing to a Vec cannot fail.
            let _ = self.member.write_all(part);
            self.digest.update(part);
            self.member_size += part.len();
            self.size += part.len() as u64;
        }
    }

    /// Uncompressed bytes waiting in the current member.
    pub fn buffered(&self) -> usize {
        self.member_size
    }

    /// The current member, compressed and closed, if it holds anything.
    pub fn take_chunk(&mut self) -> Option<Vec<u8>> {
        if self.member_size == 0 {
            return None;
        }
        self.member_size = 0;
        let member = std::mem::replace(
            &mut self.member,
            GzEncoder::new(Vec::new(), Compression::default()),
        );
        member.finish().ok()
    }

    /// The last chunk (if any) and what the whole recording measured.
    pub fn finish(mut self, at: Duration) -> (Option<Vec<u8>>, Summary) {
        if !self.partial_char.is_empty() && !self.truncated {
            let rest = std::mem::take(&mut self.partial_char);
            self.event(at, "o", &String::from_utf8_lossy(&rest));
        }
        let chunk = self.take_chunk();
        let digest = self.digest.finish();
        let sha256 = digest.as_ref().iter().map(|b| format!("{b:02x}")).collect();
        (
            chunk,
            Summary {
                size: self.size,
                sha256,
                truncated: self.truncated,
            },
        )
    }
}

/// One event of a recording, as `admin play` and the console replay it.
#[derive(Clone, Debug, PartialEq)]
pub struct Event {
    pub at: f64,
    pub code: String,
    pub text: String,
}

/// The most text one stored chunk may open to: a chunk holds about 256
/// KiB (what the recorders store at a time) and one event past it (a
/// frame of output, escaped).
const MAX_CHUNK_TEXT: u64 = 16 << 20;

/// The asciicast text of one stored chunk (a gzip member, or several).
pub fn chunk_text(chunk: &[u8]) -> Result<String, String> {
    text_within(chunk, MAX_CHUNK_TEXT)
}

fn text_within(stored: &[u8], limit: u64) -> Result<String, String> {
    use std::io::Read;
    let mut text = String::new();
    flate2::read::MultiGzDecoder::new(stored)
        .take(limit.saturating_add(1))
        .read_to_string(&mut text)
        .map_err(|e| format!("the recording is damaged: {e}"))?;
    if text.len() as u64 > limit {
        return Err("the recording is damaged: a chunk opens to too much text".into());
    }
    Ok(text)
}

/// The header of a recording, from its first chunk's text; the rest of
/// that text.
pub fn header(first: &str) -> Result<(serde_json::Value, &str), String> {
    let (line, rest) = first.split_once('\n').unwrap_or((first, ""));
    let header = serde_json::from_str(line).map_err(|_| "the recording has no asciicast header")?;
    Ok((header, rest))
}

/// The events in asciicast text (lines that are not events are skipped).
pub fn events(text: &str) -> impl Iterator<Item = Event> + '_ {
    text.lines().filter_map(|line| {
        let (at, code, text): (f64, String, String) = serde_json::from_str(line).ok()?;
        Some(Event { at, code, text })
    })
}

/// The asciicast text of a stored recording (its chunks, as stored, in
/// order): the header's JSON and the events.
pub fn decode(stored: &[u8]) -> Result<(serde_json::Value, Vec<Event>), String> {
    let text = text_within(stored, u64::MAX - 1)?;
    let (header, rest) = header(&text)?;
    Ok((header, events(rest).collect()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn frames(frames: &[Frame]) -> Vec<u8> {
        let mut out = BytesMut::new();
        for frame in frames {
            frame.encode(&mut out).unwrap();
        }
        out.to_vec()
    }

    fn screen() -> Screen {
        Screen {
            term: "xterm-256color".into(),
            cols: 80,
            rows: 24,
            timestamp: 1_700_000_000,
        }
    }

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn output_and_resizes_are_recorded_and_typing_is_not() {
        let mut cast = Cast::new(&screen(), u64::MAX);
        let typed = frames(&[
            Frame::Stdin(Bytes::from_static(b"secret-password\r")),
            Frame::Message(Bytes::from(
                serde_json::to_vec(&SessionMessage::Resize {
                    rows: 40,
                    cols: 120,
                })
                .unwrap(),
            )),
        ]);
        // Split mid-frame: the rest comes in the next read.
        cast.observe(Direction::ToComputer, &typed[..7], ms(10));
        cast.observe(Direction::ToComputer, &typed[7..], ms(20));
        let shown = frames(&[
            Frame::Stdout(Bytes::from_static(b"$ ")),
            Frame::Stderr(Bytes::from_static(b"warning\n")),
        ]);
        cast.observe(Direction::ToOperator, &shown, ms(1500));
        let first = cast.take_chunk().unwrap();
        cast.observe(
            Direction::ToOperator,
            &frames(&[Frame::Stdout(Bytes::from_static("caf\u{e9}".as_bytes()))]),
            ms(2000),
        );
        let (last, summary) = cast.finish(ms(2500));
        let stored = [first, last.unwrap()].concat();
        let (header, events) = decode(&stored).unwrap();
        assert_eq!(header["width"], 80);
        assert_eq!(header["env"]["TERM"], "xterm-256color");
        let got: Vec<(f64, &str, &str)> = events
            .iter()
            .map(|e| (e.at, e.code.as_str(), e.text.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                (0.02, "r", "120x40"),
                (1.5, "o", "$ "),
                (1.5, "o", "warning\n"),
                (2.0, "o", "café"),
            ]
        );
        let mut text = String::new();
        std::io::Read::read_to_string(
            &mut flate2::read::MultiGzDecoder::new(&stored[..]),
            &mut text,
        )
        .unwrap();
        assert!(!text.contains("secret"));
        assert_eq!(summary.size, text.len() as u64);
        let digest = ring::digest::digest(&ring::digest::SHA256, text.as_bytes());
        assert_eq!(
            summary.sha256,
            digest
                .as_ref()
                .iter()
                .map(|b| format!("{b:02x}"))
                .collect::<String>()
        );
    }

    #[test]
    fn a_character_split_between_outputs_is_written_whole() {
        let mut cast = Cast::new(&screen(), u64::MAX);
        let euro = "€".as_bytes();
        for (part, at) in [(&euro[..1], 1), (&euro[1..], 2)] {
            let bytes = frames(&[Frame::Stdout(Bytes::copy_from_slice(part))]);
            cast.observe(Direction::ToOperator, &bytes, ms(at));
        }
        let bad = frames(&[Frame::Stdout(Bytes::from_static(b"a\xffb"))]);
        cast.observe(Direction::ToOperator, &bad, ms(3));
        let (chunk, _) = cast.finish(ms(4));
        let (_, events) = decode(&chunk.unwrap()).unwrap();
        let texts: Vec<&str> = events.iter().map(|e| e.text.as_str()).collect();
        assert_eq!(texts, ["€", "a\u{fffd}b"]);
    }

    #[test]
    fn bytes_that_are_not_frames_stop_the_recording_of_that_direction() {
        let mut cast = Cast::new(&screen(), u64::MAX);
        cast.observe(Direction::ToOperator, &[0, 0, 0, 0], ms(1));
        let later = frames(&[Frame::Stdout(Bytes::from_static(b"x"))]);
        cast.observe(Direction::ToOperator, &later, ms(2));
        let (chunk, _) = cast.finish(ms(3));
        let (_, events) = decode(&chunk.unwrap()).unwrap();
        assert!(events.is_empty());
    }

    #[test]
    fn a_recording_cut_after_a_chunk_is_readable() {
        let mut cast = Cast::new(&screen(), u64::MAX);
        let out = frames(&[Frame::Stdout(Bytes::from_static(b"before the cut"))]);
        cast.observe(Direction::ToOperator, &out, ms(5));
        let first = cast.take_chunk().unwrap();
        assert!(cast.take_chunk().is_none(), "nothing new, no chunk");
        let (_, events) = decode(&first).unwrap();
        assert_eq!(events[0].text, "before the cut");
        assert!(decode(&first[..first.len() - 3]).is_err());
    }

    #[test]
    fn a_recording_stops_at_its_size_limit_and_says_so() {
        let mut cast = Cast::new(&screen(), 4096);
        let line = vec![b'x'; 100];
        for n in 0..100 {
            cast.observe(
                Direction::ToOperator,
                &frames(&[Frame::Stdout(line.clone().into())]),
                ms(n),
            );
        }
        let (chunk, summary) = cast.finish(ms(200));
        assert!(summary.truncated);
        assert!(summary.size <= 4096, "{}", summary.size);
        let (_, events) = decode(&chunk.unwrap()).unwrap();
        let last = events.last().unwrap();
        assert_eq!((last.code.as_str(), last.text.as_str()), ("m", TRUNCATED));
        assert!(events.len() > 20, "recorded up to the limit");
    }
}
