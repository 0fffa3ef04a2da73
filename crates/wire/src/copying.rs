//! What both ends of a copy (`doorman cp`) compute alike: SHA-256 sums in
//! hex, and where a resumed file's data starts (`--resume`).

/// Where a sender of `file` (of `size` bytes) starts, given what the
/// receiver `have`s (length, SHA-256): after those bytes when they are the
/// file's own start (`hash` then holds them, and the file is there),
/// else at 0.
pub async fn resume_from(
    file: &mut tokio::fs::File,
    size: u64,
    have: Option<(u64, String)>,
    hash: &mut ring::digest::Context,
) -> u64 {
    use tokio::io::{AsyncReadExt, AsyncSeekExt};
    let Some((offset, theirs)) = have.filter(|(offset, _)| (1..=size).contains(offset)) else {
        return 0;
    };
    let mut ours = ring::digest::Context::new(&ring::digest::SHA256);
    let mut left = offset;
    let mut buffer = vec![0u8; 256 * 1024];
    while left > 0 {
        let want = usize::try_from(left).map_or(buffer.len(), |left| left.min(buffer.len()));
        match file.read(&mut buffer[..want]).await {
            Ok(0) | Err(_) => break,
            Ok(n) => {
                ours.update(&buffer[..n]);
                left -= n as u64;
            }
        }
    }
    if left == 0 && hex(ours.clone().finish().as_ref()).eq_ignore_ascii_case(&theirs) {
        *hash = ours;
        return offset;
    }
    let _ = file.seek(std::io::SeekFrom::Start(0)).await;
    0
}

/// Sends `file`'s bytes from `sent` up to `size`, as frames `frame` makes
/// (the sender's data frames), each added to `hash` and counted by
/// `moved`; a problem reading it (it shrank, or cannot be read on) is
/// `Ok(Some(why))`, and the connection's own failure an error.
pub async fn send_bytes<W: tokio::io::AsyncWrite + Unpin>(
    file: &mut tokio::fs::File,
    (mut sent, size): (u64, u64),
    hash: &mut ring::digest::Context,
    writer: &mut crate::connection::FrameWriter<W>,
    frame: fn(bytes::Bytes) -> crate::frame::Frame,
    mut moved: impl FnMut(u64),
) -> Result<Option<String>, crate::ConnectionError> {
    use tokio::io::AsyncReadExt;
    let mut buffer = vec![0u8; crate::frame::MAX_DATA_LEN];
    loop {
        let want = usize::try_from(size.saturating_sub(sent))
            .map_or(buffer.len(), |left| left.min(buffer.len()));
        if want == 0 {
            return Ok(None);
        }
        match file.read(&mut buffer[..want]).await {
            Ok(0) => return Ok(Some("it shrank while it was read".to_string())),
            Ok(n) => {
                hash.update(&buffer[..n]);
                sent += n as u64;
                writer
                    .write_frame(&frame(bytes::Bytes::copy_from_slice(&buffer[..n])))
                    .await?;
                moved(n as u64);
            }
            Err(error) => return Ok(Some(error.to_string())),
        }
    }
}

/// Adds everything `file` holds, from the start, to `hash`; leaves the
/// file at its end.
pub fn hash_all(file: &mut std::fs::File, hash: &mut ring::digest::Context) -> std::io::Result<()> {
    use std::io::{Read, Seek};
    file.seek(std::io::SeekFrom::Start(0))?;
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        match file.read(&mut buffer)? {
            0 => return Ok(()),
            n => hash.update(&buffer[..n]),
        }
    }
}

/// Lower-case hex, as SHA-256 sums are written.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}
