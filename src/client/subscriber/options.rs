//! What a subscriber asks for ([`SubscribeOptions`]) and the request line
//! that says it.

use std::time::Duration;

use crate::subscription::{Filter, Request, Start, MAX_REQUEST_LINE};
use crate::Error;

/// What a subscriber asks for. The default is the plain stream (nothing is
/// written to the publisher) with automatic reconnection.
#[derive(Debug, Clone, PartialEq)]
pub struct SubscribeOptions {
    /// Which notifications to receive; the default lets everything through.
    pub filter: Filter,
    /// Ask the publisher to report notifications dropped for us ([`Event::Dropped`]).
    pub markers: bool,
    /// Ask for a heartbeat line whenever the stream has been idle this long
    /// (0.1 s to 3600 s). Silence for three intervals is then taken as a dead
    /// connection and the subscriber reconnects.
    pub heartbeat: Option<Duration>,
    /// Keep trying when the publisher is absent or goes away (the default).
    /// With `false`, connect fails when it is absent and recv fails when it leaves.
    pub reconnect: bool,
    /// Start right after the notification this cursor names (a cursor from
    /// [`Subscriber::cursor`], kept by an earlier run): what the publisher
    /// still holds of what followed it, then live.
    pub after: Option<String>,
    /// Start with everything the publisher's replay ring holds, then live.
    pub replay: bool,
}

impl Default for SubscribeOptions {
    fn default() -> SubscribeOptions {
        SubscribeOptions {
            filter: Filter::default(),
            markers: false,
            heartbeat: None,
            reconnect: true,
            after: None,
            replay: false,
        }
    }
}

impl SubscribeOptions {
    /// Where the stream starts, as the options say.
    pub(super) fn start(&self) -> Result<Start, Error> {
        match (&self.after, self.replay) {
            (Some(_), true) => Err(Error::new(
                libc::EINVAL,
                "after and replay cannot be combined: after resumes from a cursor, replay starts from the oldest notification the publisher holds",
            )),
            (Some(cursor), false) => Ok(Start::After(
                cursor
                    .parse()
                    .map_err(|why: String| Error::new(libc::EINVAL, why))?,
            )),
            (None, true) => Ok(Start::Replay),
            (None, false) => Ok(Start::Live),
        }
    }
}

/// The request line to write after connecting (newline included). The
/// subscriber always asks for cursors, so that it knows where it is and can
/// resume after a reconnection. Checked as the publisher will check it.
pub(super) fn request_line(
    filter: &Filter,
    markers: bool,
    heartbeat: Option<Duration>,
    start: Start,
) -> Result<Vec<u8>, Error> {
    let line = Request::Subscribe {
        filter: filter.clone(),
        markers,
        heartbeat,
        cursors: true,
        start,
    }
    .to_line();
    if line.len() > MAX_REQUEST_LINE {
        return Err(Error::new(
            libc::EINVAL,
            format!(
                "the subscription request is {} bytes; the publisher accepts at most {MAX_REQUEST_LINE}",
                line.len()
            ),
        ));
    }
    Request::parse(&line[..line.len() - 1])
        .map_err(|why| Error::new(libc::EINVAL, format!("invalid subscription: {why}")))?;
    Ok(line)
}
