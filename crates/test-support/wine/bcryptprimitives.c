/* A stand-in for bcryptprimitives.dll's ProcessPrng, which Rust's standard
 * library calls at start and Debian's Wine 8 lacks: the same bytes from
 * RtlGenRandom (advapi32's SystemFunction036). Built with mingw beside the
 * exe in the tests only (test-support's wine module); Windows has its own. */
#include <windows.h>
BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);
__declspec(dllexport) BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len) {
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk)) return FALSE;
        data += chunk; len -= chunk;
    }
    return TRUE;
}
