//! Who is at the other end of the consent pipe: the client's user (a SID,
//! `S-1-5-21-…`) and whether it is an administrator, read from the
//! client's own token by impersonating it for a moment; who this process
//! runs as; and an account's name.

use std::io;
use std::os::windows::io::{AsRawHandle, FromRawHandle, OwnedHandle};
use windows_sys::Win32::Foundation::{HANDLE, HLOCAL, LocalFree};
use windows_sys::Win32::Security::Authorization::{ConvertSidToStringSidW, ConvertStringSidToSidW};
use windows_sys::Win32::Security::{
    CheckTokenMembership, CreateWellKnownSid, DuplicateToken, GetTokenInformation,
    LookupAccountSidW, PSID, RevertToSelf, SECURITY_MAX_SID_SIZE, SecurityIdentification,
    TOKEN_DUPLICATE, TOKEN_QUERY, TOKEN_USER, TokenUser, WinBuiltinAdministratorsSid,
};
use windows_sys::Win32::System::Pipes::{GetNamedPipeServerProcessId, ImpersonateNamedPipeClient};
use windows_sys::Win32::System::Threading::{
    GetCurrentProcess, GetCurrentThread, OpenProcess, OpenProcessToken, OpenThreadToken,
    PROCESS_QUERY_LIMITED_INFORMATION,
};

/// A process's user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PipeUser {
    /// The user's SID, as text.
    pub sid: String,
    /// Whether its token has the Administrators group enabled (elevated,
    /// where User Account Control splits the token).
    pub administrator: bool,
}

/// The user of the client at the other end of `pipe`, a server end that
/// has read from it (Windows lets a server impersonate its client only
/// then). The client's token says it, as of the client's own choosing of
/// how far it may be impersonated: an anonymous client is nobody.
pub fn client(pipe: &impl AsRawHandle) -> io::Result<PipeUser> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the pipe is open. Between impersonating and reverting
    // nothing else runs on this thread (no await); a thread that cannot
    // revert would act as the client, so the process stops instead.
    unsafe {
        if ImpersonateNamedPipeClient(pipe.as_raw_handle()) == 0 {
            return Err(io::Error::last_os_error());
        }
        let opened = OpenThreadToken(GetCurrentThread(), TOKEN_QUERY, 1, &mut token);
        let error = io::Error::last_os_error();
        if RevertToSelf() == 0 {
            std::process::abort();
        }
        if opened == 0 {
            return Err(error);
        }
    }
    // SAFETY: the handle is new and ours; an impersonation token already.
    let token = unsafe { OwnedHandle::from_raw_handle(token) };
    Ok(PipeUser {
        sid: user_sid(&token)?,
        administrator: is_member_of_administrators(&token)?,
    })
}

/// The user SID of the process serving `pipe` (a client end), from its
/// token: where Windows cannot say who owns the pipe (Wine), a second
/// way to know the server. A standard user may not read a service's
/// token; the pipe's owner answers there.
pub fn server_process_user(pipe: &impl AsRawHandle) -> io::Result<String> {
    let mut id = 0u32;
    // SAFETY: the handle is a pipe's client end, open for the call.
    if unsafe { GetNamedPipeServerProcessId(pipe.as_raw_handle(), &mut id) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: a query-only open; a null result is an error.
    let process = unsafe { OpenProcess(PROCESS_QUERY_LIMITED_INFORMATION, 0, id) };
    if process.is_null() {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle is new and ours.
    let process = unsafe { OwnedHandle::from_raw_handle(process) };
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the process handle is open; the out-pointer is valid.
    if unsafe { OpenProcessToken(process.as_raw_handle(), TOKEN_QUERY, &mut token) } == 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle is new and ours.
    let token = unsafe { OwnedHandle::from_raw_handle(token) };
    user_sid(&token)
}

/// This process's user.
pub fn current() -> io::Result<PipeUser> {
    let mut token: HANDLE = std::ptr::null_mut();
    // SAFETY: the current process's pseudo-handle; the out-pointer is valid.
    if unsafe {
        OpenProcessToken(
            GetCurrentProcess(),
            TOKEN_QUERY | TOKEN_DUPLICATE,
            &mut token,
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the handle is new and ours.
    let token = unsafe { OwnedHandle::from_raw_handle(token) };
    let mut duplicate: HANDLE = std::ptr::null_mut();
    // CheckTokenMembership takes an impersonation token: a copy as one.
    // SAFETY: the token is open; the copy is new and ours.
    if unsafe {
        DuplicateToken(
            token.as_raw_handle(),
            SecurityIdentification,
            &mut duplicate,
        )
    } == 0
    {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: as above.
    let duplicate = unsafe { OwnedHandle::from_raw_handle(duplicate) };
    Ok(PipeUser {
        sid: user_sid(&token)?,
        administrator: is_member_of_administrators(&duplicate)?,
    })
}

/// The token's user SID, as text.
fn user_sid(token: &OwnedHandle) -> io::Result<String> {
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
    // SAFETY: GetTokenInformation filled a TOKEN_USER at the buffer's
    // start; its SID points inside the buffer, alive for this function.
    let sid = unsafe { (*buffer.as_ptr().cast::<TOKEN_USER>()).User.Sid };
    sid_text(sid)
}

/// A SID as text (`S-1-5-…`).
pub(crate) fn sid_text(sid: PSID) -> io::Result<String> {
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

/// `DOMAIN\name` of the account `sid` names, if Windows knows one. It
/// may ask a domain controller: call it off the runtime's threads.
pub fn account_name(sid: &str) -> Option<String> {
    let text: Vec<u16> = sid.encode_utf16().chain(Some(0)).collect();
    let mut binary: PSID = std::ptr::null_mut();
    let mut name = [0u16; 256];
    let mut domain = [0u16; 256];
    let (mut name_length, mut domain_length) = (256u32, 256u32);
    let mut kind = 0;
    // SAFETY: `text` is NUL-terminated; `binary` is Windows' allocation,
    // freed below; both buffers hold the lengths given.
    let found = unsafe {
        if ConvertStringSidToSidW(text.as_ptr(), &mut binary) == 0 {
            return None;
        }
        let found = LookupAccountSidW(
            std::ptr::null(),
            binary,
            name.as_mut_ptr(),
            &mut name_length,
            domain.as_mut_ptr(),
            &mut domain_length,
            &mut kind,
        );
        LocalFree(binary as HLOCAL);
        found
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

/// Whether the (impersonation) token has the Administrators group enabled.
fn is_member_of_administrators(token: &OwnedHandle) -> io::Result<bool> {
    let mut administrators = [0u8; SECURITY_MAX_SID_SIZE as usize];
    let mut length = SECURITY_MAX_SID_SIZE;
    // SAFETY: the SID buffer is SECURITY_MAX_SID_SIZE bytes, as documented;
    // the token is open.
    unsafe {
        let sid: PSID = administrators.as_mut_ptr().cast();
        if CreateWellKnownSid(
            WinBuiltinAdministratorsSid,
            std::ptr::null_mut(),
            sid,
            &mut length,
        ) == 0
        {
            return Err(io::Error::last_os_error());
        }
        let mut member = 0;
        if CheckTokenMembership(token.as_raw_handle(), sid, &mut member) == 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(member != 0)
    }
}
