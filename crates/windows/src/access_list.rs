//! A folder only SYSTEM and Administrators may open (the settings
//! folder, `%ProgramData%\Doorman`: the agent's key and identity live
//! there), inherited by every file in it, none from above.

use std::ffi::c_void;
use std::io;
use std::os::windows::ffi::OsStrExt;
use std::path::Path;
use windows_sys::Win32::Foundation::{HLOCAL, LocalFree};
use windows_sys::Win32::Security::Authorization::{
    ConvertSecurityDescriptorToStringSecurityDescriptorW,
    ConvertStringSecurityDescriptorToSecurityDescriptorW, SDDL_REVISION_1,
};
use windows_sys::Win32::Security::{
    DACL_SECURITY_INFORMATION, GetFileSecurityW, PROTECTED_DACL_SECURITY_INFORMATION,
    SetFileSecurityW,
};

/// Full control for SYSTEM and Administrators, on the folder and all it
/// holds; nothing inherited from the folder above.
pub const ADMINISTRATORS_ONLY: &str = "D:P(A;OICI;FA;;;SY)(A;OICI;FA;;;BA)";

fn wide(path: &Path) -> Vec<u16> {
    path.as_os_str().encode_wide().chain(Some(0)).collect()
}

/// Gives `path` the access list `sddl` (in Windows' SDDL form).
pub fn set(path: &Path, sddl: &str) -> io::Result<()> {
    let sddl: Vec<u16> = sddl.encode_utf16().chain(Some(0)).collect();
    let mut descriptor: *mut c_void = std::ptr::null_mut();
    // SAFETY: `sddl` is NUL-terminated; on success `descriptor` is
    // Windows' allocation, freed with LocalFree below.
    unsafe {
        if ConvertStringSecurityDescriptorToSecurityDescriptorW(
            sddl.as_ptr(),
            SDDL_REVISION_1,
            &mut descriptor,
            std::ptr::null_mut(),
        ) == 0
        {
            return Err(io::Error::last_os_error());
        }
        let set = SetFileSecurityW(
            wide(path).as_ptr(),
            DACL_SECURITY_INFORMATION | PROTECTED_DACL_SECURITY_INFORMATION,
            descriptor,
        );
        let error = io::Error::last_os_error();
        LocalFree(descriptor as HLOCAL);
        if set == 0 { Err(error) } else { Ok(()) }
    }
}

/// `path`'s access list, in SDDL.
pub fn get(path: &Path) -> io::Result<String> {
    let name = wide(path);
    let mut needed = 0u32;
    // SAFETY: asking the size only.
    unsafe {
        GetFileSecurityW(
            name.as_ptr(),
            DACL_SECURITY_INFORMATION,
            std::ptr::null_mut(),
            0,
            &mut needed,
        )
    };
    let mut buffer = vec![0u64; usize::try_from(needed).unwrap_or(0).div_ceil(8).max(1)];
    let length =
        u32::try_from(buffer.len() * 8).map_err(|_| io::Error::other("descriptor too large"))?;
    let mut text: *mut u16 = std::ptr::null_mut();
    // SAFETY: the buffer is as large as asked and aligned; on success
    // `text` is a NUL-terminated allocation freed with LocalFree below.
    unsafe {
        if GetFileSecurityW(
            name.as_ptr(),
            DACL_SECURITY_INFORMATION,
            buffer.as_mut_ptr().cast(),
            length,
            &mut needed,
        ) == 0
            || ConvertSecurityDescriptorToStringSecurityDescriptorW(
                buffer.as_mut_ptr().cast(),
                SDDL_REVISION_1,
                DACL_SECURITY_INFORMATION,
                &mut text,
                std::ptr::null_mut(),
            ) == 0
        {
            return Err(io::Error::last_os_error());
        }
        let count = (0..).take_while(|&i| *text.add(i) != 0).count();
        let sddl = String::from_utf16_lossy(std::slice::from_raw_parts(text, count));
        LocalFree(text as HLOCAL);
        Ok(sddl)
    }
}
