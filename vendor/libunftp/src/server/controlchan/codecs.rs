use super::{
    Reply,
    command::Command,
    error::{ControlChanError, ControlChanErrorKind},
    line_parser,
};

use bytes::BytesMut;
use std::io::Write;
use tokio_util::codec::{Decoder, Encoder};

// FTPCodec implements tokio's `Decoder` and `Encoder` traits for the control channel, that we'll
// use to decode FTP commands and encode their responses.
pub struct FtpCodec {
    // Stored index of the next index to examine for a '\n' character. This is used to optimize
    // searching. For example, if `decode` was called with `abc`, it would hold `3`, because that
    // is the next index to examine. The next time `decode` is called with `abcde\n`, we will only
    // look at `de\n` before returning.
    next_index: usize,
    // gatehouse patch: longest line accepted, CRLF included.
    max_line: usize,
    // gatehouse patch: the last line ended at a CR with nothing after it yet; a LF that comes
    // next belongs to it.
    skip_lf: bool,
}

impl FtpCodec {
    #[allow(dead_code)]
    pub fn new() -> Self {
        Self::with_max_line(usize::MAX)
    }

    /// gatehouse patch: a codec that refuses lines longer than `max_line` instead of buffering
    /// until a newline arrives.
    pub fn with_max_line(max_line: usize) -> Self {
        FtpCodec {
            next_index: 0,
            max_line,
            skip_lf: false,
        }
    }
}

// gatehouse patch: a line that does not parse is an item (`Ok(Some(Err(..)))`), not a decoder
// error: tokio-util's FramedRead ends the stream after any decoder error, so every 501 used to
// close the control connection. Only an over-long line is fatal.
impl Decoder for FtpCodec {
    type Item = Result<Command, ControlChanError>;
    type Error = ControlChanError;

    // Here we decode the incoming bytes into a meaningful command. We'll split on newlines, and
    // parse the resulting line using `Command::parse()`. This method will be called by tokio.
    fn decode(&mut self, buf: &mut BytesMut) -> Result<Option<Self::Item>, Self::Error> {
        if self.skip_lf && !buf.is_empty() {
            self.skip_lf = false;
            if buf[0] == b'\n' {
                let _ = buf.split_to(1);
            }
        }
        // gatehouse patch: a CR that is the last byte received ends the line too. Clients send
        // ABOR as urgent data (Python's ftplib.abort() uses MSG_OOB): the kernel takes the
        // final LF out of the stream, so "ABOR\r" is all that arrives. A LF that follows later
        // is dropped (CR cannot appear inside a command: RFC 959 and 2640 escape it).
        if self.next_index < buf.len()
            && buf.len() < self.max_line
            && buf[buf.len() - 1] == b'\r'
            && !buf[self.next_index..].contains(&b'\n')
        {
            let mut line = buf.split_to(buf.len());
            line.extend_from_slice(b"\n");
            self.next_index = 0;
            self.skip_lf = true;
            return Ok(Some(line_parser::parse(line).map_err(ControlChanError::from)));
        }
        if let Some(newline_offset) = buf[self.next_index..].iter().position(|b| *b == b'\n') {
            let newline_index = newline_offset + self.next_index;
            if newline_index >= self.max_line {
                return Err(ControlChanError::new(ControlChanErrorKind::CommandLineTooLong));
            }
            let line = buf.split_to(newline_index + 1);
            self.next_index = 0;
            Ok(Some(line_parser::parse(line).map_err(ControlChanError::from)))
        } else if buf.len() >= self.max_line {
            // gatehouse patch: no newline within the cap.
            Err(ControlChanError::new(ControlChanErrorKind::CommandLineTooLong))
        } else {
            self.next_index = buf.len();
            Ok(None)
        }
    }
}

impl Encoder<Reply> for FtpCodec {
    type Error = ControlChanError;

    // Here we encode the outgoing response
    fn encode(&mut self, reply: Reply, buf: &mut BytesMut) -> Result<(), Self::Error> {
        let mut buffer = vec![];
        match reply {
            Reply::None => {
                return Ok(());
            }
            Reply::CodeAndMsg { code, msg } => {
                if msg.is_empty() {
                    writeln!(buffer, "{}\r", code as u32)?;
                } else {
                    writeln!(buffer, "{} {}\r", code as u32, msg)?;
                }
            }
            Reply::MultiLine { code, mut lines } => {
                // Get the last line since it needs to be preceded by the response code.
                let last_line = lines.pop().unwrap_or_default();

                // Lines starting with a digit should be indented
                for it in lines.iter_mut() {
                    if it.chars().next().is_some_and(|c| c.is_ascii_digit()) {
                        it.insert(0, ' ');
                    }
                }
                if lines.is_empty() {
                    writeln!(buffer, "{} {}\r", code as u32, last_line)?;
                } else {
                    write!(buffer, "{}-{}\r\n{} {}\r\n", code as u32, lines.join("\r\n"), code as u32, last_line)?;
                }
            }
        }
        buf.extend(&buffer);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::super::ReplyCode;
    use super::*;

    #[test]
    fn a_line_over_the_cap_is_refused_without_a_newline() {
        // gatehouse patch regression test.
        let mut codec = FtpCodec::with_max_line(16);
        let mut buf = BytesMut::from(&b"NOOP\r\n"[..]);
        assert!(codec.decode(&mut buf).unwrap().unwrap().is_ok());
        let mut buf = BytesMut::from(&b"USER aaaaaaaaaaaaaaaaaaaaaaa"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap_err().kind(), &ControlChanErrorKind::CommandLineTooLong);
        let mut codec = FtpCodec::with_max_line(16);
        let mut buf = BytesMut::from(&b"USER aaaaaaaaaaaaaaaaaaaaaaa\r\n"[..]);
        assert_eq!(codec.decode(&mut buf).unwrap_err().kind(), &ControlChanErrorKind::CommandLineTooLong);
    }

    #[test]
    fn a_line_may_end_at_a_lone_cr() {
        // gatehouse patch regression test (ABOR sent with MSG_OOB loses its LF).
        let mut codec = FtpCodec::with_max_line(8192);
        let mut buf = BytesMut::from(&b"ABOR\r"[..]);
        assert!(codec.decode(&mut buf).unwrap().unwrap().is_ok());
        let mut buf = BytesMut::from(&b"\nNOOP\r\n"[..]);
        assert!(matches!(codec.decode(&mut buf).unwrap().unwrap(), Ok(Command::Noop)));
    }

    #[test]
    fn encode_multiline_reply_with_blank_line_does_not_panic() {
        let mut codec = FtpCodec::new();
        let mut buf = BytesMut::new();
        let reply = Reply::new_multiline(ReplyCode::HelpMessage, vec!["Usage: foo", "", "Options:"]);

        codec.encode(reply, &mut buf).unwrap();

        assert_eq!(buf, "214-Usage: foo\r\n\r\n214 Options:\r\n".as_bytes());
    }
}
