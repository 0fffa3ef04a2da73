//! A Windows command line from a program and its arguments, quoted so
//! that the C runtime's `CommandLineToArgvW` rules split it back whole.
//! Pure UTF-16 work, tested on every system.

/// `program` and `args` as one NUL-terminated command line.
pub fn command_line(program: &[u16], args: &[Vec<u16>]) -> Vec<u16> {
    let mut line = Vec::new();
    quote(program, &mut line);
    for arg in args {
        line.push(u16::from(b' '));
        quote(arg, &mut line);
    }
    line.push(0);
    line
}

/// Appends `units` quoted so that `CommandLineToArgvW` reads them back.
fn quote(units: &[u16], line: &mut Vec<u16>) {
    let plain = !units.is_empty()
        && !units
            .iter()
            .any(|&u| u == u16::from(b' ') || u == u16::from(b'\t') || u == u16::from(b'"'));
    if plain {
        line.extend_from_slice(units);
        return;
    }
    line.push(u16::from(b'"'));
    let mut backslashes = 0usize;
    for &unit in units {
        if unit == u16::from(b'\\') {
            backslashes += 1;
            continue;
        }
        let doubled = if unit == u16::from(b'"') {
            backslashes * 2 + 1
        } else {
            backslashes
        };
        line.extend(std::iter::repeat_n(u16::from(b'\\'), doubled));
        backslashes = 0;
        line.push(unit);
    }
    line.extend(std::iter::repeat_n(u16::from(b'\\'), backslashes * 2));
    line.push(u16::from(b'"'));
}

#[cfg(test)]
mod tests {
    use super::command_line;

    fn line(program: &str, args: &[&str]) -> String {
        let args: Vec<Vec<u16>> = args.iter().map(|a| a.encode_utf16().collect()).collect();
        let program: Vec<u16> = program.encode_utf16().collect();
        let mut units = command_line(&program, &args);
        assert_eq!(units.pop(), Some(0));
        String::from_utf16(&units).unwrap()
    }

    #[test]
    fn arguments_are_quoted_as_the_c_runtime_reads_them() {
        assert_eq!(line("cmd.exe", &[]), "cmd.exe");
        assert_eq!(
            line(
                r"C:\Program Files\Doorman\doorman.exe",
                &["console-host", "cmd.exe"]
            ),
            r#""C:\Program Files\Doorman\doorman.exe" console-host cmd.exe"#
        );
        assert_eq!(line("a", &[r#"say "hi""#]), r#"a "say \"hi\"""#);
        assert_eq!(line("a", &[r"dir\ x\"]), r#"a "dir\ x\\""#);
        assert_eq!(line("a", &[r"C:\path\no-spaces\"]), r"a C:\path\no-spaces\");
        assert_eq!(line("a", &[""]), r#"a """#);
    }
}
