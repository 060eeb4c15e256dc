//! IRCv3 message tags on lines the gateway writes: a tag added to each line of a run of lines
//! (server-time, batch), and labeled responses.

/// Adds `tag` (`key=value`) to every line of `out[start..]` (whole lines, CR LF ended), in
/// front of any tags a line has.
pub(crate) fn tag_lines(out: &mut Vec<u8>, start: usize, tag: &str) {
    if start >= out.len() {
        return;
    }
    let lines = out.split_off(start);
    for line in lines.split_inclusive(|&b| b == b'\n') {
        out.push(b'@');
        out.extend_from_slice(tag.as_bytes());
        match line.strip_prefix(b"@") {
            Some(tagged) => {
                out.push(b';');
                out.extend_from_slice(tagged);
            }
            None => {
                out.push(b' ');
                out.extend_from_slice(line);
            }
        }
    }
}

/// The lines of one labeled response: one line carries the label; more go in a
/// `labeled-response` batch (`batch_id`), or unlabeled if the client has no batches; none is
/// an `ACK`.
pub(crate) fn labeled(server: &str, lines: &[u8], label: &str, batch_id: Option<&str>) -> Vec<u8> {
    let count = lines.iter().filter(|&&b| b == b'\n').count();
    let mut out = Vec::with_capacity(lines.len() + 64);
    match (count, batch_id) {
        (0, _) => out.extend_from_slice(format!("@label={label} :{server} ACK\r\n").as_bytes()),
        (1, _) => {
            out.extend_from_slice(lines);
            tag_lines(&mut out, 0, &format!("label={label}"));
        }
        (_, Some(id)) => {
            let open = format!("@label={label} :{server} BATCH +{id} labeled-response\r\n");
            out.extend_from_slice(open.as_bytes());
            let start = out.len();
            out.extend_from_slice(lines);
            tag_lines(&mut out, start, &format!("batch={id}"));
            out.extend_from_slice(format!(":{server} BATCH -{id}\r\n").as_bytes());
        }
        (_, None) => out.extend_from_slice(lines),
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_tag_goes_in_front_of_each_line_and_its_tags() {
        let mut out = b"keep\r\n:a X\r\n@t=1 :b Y\r\n".to_vec();
        tag_lines(&mut out, 6, "time=Z");
        assert_eq!(out, b"keep\r\n@time=Z :a X\r\n@time=Z;t=1 :b Y\r\n");
    }

    #[test]
    fn labels_go_on_one_line_a_batch_or_an_ack() {
        assert_eq!(labeled("s", b"", "L", None), b"@label=L :s ACK\r\n");
        assert_eq!(labeled("s", b":s 1\r\n", "L", None), b"@label=L :s 1\r\n");
        assert_eq!(
            labeled("s", b":s 1\r\n:s 2\r\n", "L", Some("b1")),
            b"@label=L :s BATCH +b1 labeled-response\r\n@batch=b1 :s 1\r\n@batch=b1 :s 2\r\n:s BATCH -b1\r\n"
        );
    }
}
