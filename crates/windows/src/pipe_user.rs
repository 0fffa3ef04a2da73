//! Who is at the other end of a named pipe: the process at its client
//! end (or its server end), its user (a SID, `S-1-5-21-…`, and the
//! account's name) and whether it is an administrator; and who this
//! process runs as. The consent pipe answers only its own user and
//! administrators, and its clients talk only to their own user's agent
//! or the service's.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use windows_sys::Win32::Foundation::{HANDLE, HLOCAL, LocalFree};
use windows_sys::Win32::Security::Authorization::ConvertSidToStringSidW;
use windows_sys::Win32::Security::{
    CheckTokenMembership, CreateWellKnownSid, DuplicateToken, GetTokenInformation,
    LookupAccountSidW, PSID, SECURITY_MAX_SID_SIZE, SecurityIdentification, TOKEN_DUPLICATE,
    TOKEN_QUERY, TOKEN_USER, TokenUser, WinBuiltinAdministratorsSid,
};
use windows_sys::Win32::System::Pipes::{GetNamedPipeClientProcessId, GetNamedPipeServerProcessId};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, OpenProcess, OpenProcessToken, PROCESS_QUERY_LIMITED_INFORMATION,
};

/// A process's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeUser {
    /// The user's SID, as text.
    pub sid: String,
    /// `DOMAIN\name`, where Windows knows the account.
    pub name: Option<String>,
    /// Whether the process runs with the Administrators group enabled
    /// (elevated, where User Account Control splits the token).
    pub administrator: bool,
}

/// The user of the process at the client end of `pipe` (a server end).
///
/// The process is found by the id Windows recorded when it connected;
/// it holds the pipe open while the agent answers, so the id names it.
pub fn client(pipe: &impl AsRawHandle) -> io::Result<PipeUser> {
    let mut id = 0u32;
    // SAFETY: the handle is a pipe's server end, open for the call.
    if unsafe { GetNamedPipeClientProcessId(pipe.as_raw_handle(), &mut id) } == 0 {
        return Err(io::Error::last_os_error());
    }
    user_of_process(id)
}

/// The user of the process serving `pipe` (a client end).
pub fn server(pipe: &impl AsRawHandle) -> io::Result<PipeUser> {
    let mut id = 0u32;
    // SAFETY: the handle is a pipe's client end, open for the call.
    if unsafe { GetNamedPipeServerProcessId(pipe.as_raw_handle(), &mut id) } == 0 {
        return Err(io::Error::last_os_error());
    }
    user_of_process(id)
}

fn user_of_process(id: u32) -> io::Result<PipeUser> {
    // SAFETY: a query-only open; a null result is an error.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, id) };
    if process.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle is new and ours.
    let process = unsafe { OwnedHandle::from_raw_handle(process) };
    user_of(process.as_raw_handle())
}

/// This process's user.
pub fn current() -> io::Result<PipeUser> {
    // SAFETY: a pseudo-handle, valid in this process, never closed.
    user_of(unsafe { GetCurrentProcess() })
}

fn user_of(process: HANDLE) -> io::Result<PipeUser> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: `process` is open; the out-pointer is valid.
    if unsafe { OpenProcessToken(process, TOKEN_QUERY | TOKEN_DUPLICATE, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle is new and ours.
    let token = unsafe { OwnedHandle::from_raw_handle(token) };
    let (sid, name) = user_sid(&token)?;
    Ok(PipeUser {
        sid,
        name,
        administrator: is_administrator(&token)?,
    })
}

/// The token's user SID, as text, and the account's name.
fn user_sid(token: &OwnedHandle) -> io::Result<(String, Option<String>)> {
    let mut needed = 0u32;
    // SAFETY: asking the size only, with a null buffer of length 0.
    unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            std::ptr::null_mut(),
            0,
            &mut needed,
        )
    };
    // u64s keep the buffer aligned for TOKEN_USER's pointer.
    let mut buffer = vec![0u64; usize::try_from(needed).unwrap_or(0).div_ceil(8).max(1)];
    let length =
        u32::try_from(buffer.len() * 8).map_err(|_| io::Error::other("token too large"))?;
    // SAFETY: the buffer is as large as asked, and aligned.
    if unsafe {
        GetTokenInformation(
            token.as_raw_handle(),
            TokenUser,
            buffer.as_mut_ptr().cast(),
            length,
            &mut needed,
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: GetTokenInformation filled a TOKEN_USER at the buffer's start;
    // its SID points inside the buffer, alive for this function.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    Ok((sid_text(sid)?, account_name(sid)))
}

/// `DOMAIN\name` of the account `sid` names, if Windows knows one.
fn account_name(sid: PSID) -> Option<String> {
    let mut name = [0u16; 256];
    let mut domain = [0u16; 256];
    let (mut name_length, mut domain_length) = (256u32, 256u32);
    let mut kind = 0;
    // SAFETY: both buffers hold the lengths given; `sid` is valid.
    let found = unsafe {
        LookupAccountSidW(
            std::ptr::null(),
            sid,
            name.as_mut_ptr(),
            &mut name_length,
            domain.as_mut_ptr(),
            &mut domain_length,
            &mut kind,
        )
    };
    if found == 0 {
        return None;
    }
    let text = |units: &[u16], length: u32| {
        String::from_utf16_lossy(&units[..usize::try_from(length).unwrap_or(0).min(units.len())])
    };
    let (name, domain) = (text(&name, name_length), text(&domain, domain_length));
    Some(if domain.is_empty() {
        name
    } else {
        format!("{domain}\\{name}")
    })
}

fn sid_text(sid: PSID) -> io::Result<String> {
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: `sid` is a valid SID; on success `text` is a NUL-terminated
    // string Windows allocated, freed below with LocalFree.
    unsafe {
        if ConvertSidToStringSidW(sid, &mut text) == 0 {
            return Err(io::Error::last_os_error());
        }
        let length = (0..).take_while(|&i| *text.add(i) != 0).count();
        let sid = String::from_utf16_lossy(std::slice::from_raw_parts(text, length));
        LocalFree(text as HLOCAL);
        Ok(sid)
    }
}

/// Whether the token has the Administrators group enabled.
fn is_administrator(token: &OwnedHandle) -> io::Result<bool> {
    let mut administrators = [0u8; SECURITY_MAX_SID_SIZE as usize];
    let mut length = SECURITY_MAX_SID_SIZE;
    let mut duplicate: HANDLE = std::ptr::null_mut();
    // SAFETY: the SID buffer is SECURITY_MAX_SID_SIZE bytes, as documented;
    // CheckTokenMembership needs an impersonation token, hence the copy,
    // which is new and ours.
    unsafe {
        let sid: PSID = administrators.as_mut_ptr().cast();
        if CreateWellKnownSid(
            WinBuiltinAdministratorsSid,
            std::ptr::null_mut(),
            sid,
            &mut length,
        ) == 0
            || DuplicateToken(
                token.as_raw_handle(),
                SecurityIdentification,
                &mut duplicate,
            ) == 0
        {
            return Err(io::Error::last_os_error());
        }
        let duplicate = OwnedHandle::from_raw_handle(duplicate);
        let mut member = 0;
        if CheckTokenMembership(duplicate.as_raw_handle(), sid, &mut member) == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(member != 0)
    }
}
