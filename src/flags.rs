//! Command-line flags of the subcommands for other machines (`consume`, `fleet`): `--key
//! value` and `--key=value`, walked in order.

/// Calls `each(arg, key, value)` for every argument: `key` is the flag (the part before `=`
/// of a `--key=value`), and `value` takes its value, the inline one or else the next
/// argument ("`--key` needs a value" when there is none). A flag that takes no value simply
/// does not call it.
pub fn walk(
    args: &[String],
    mut each: impl FnMut(&str, &str, &mut dyn FnMut() -> Result<String, String>) -> Result<(), String>,
) -> Result<(), String> {
    let mut it = args.iter();
    while let Some(arg) = it.next() {
        let (k, inline) = match arg.split_once('=') {
            Some((k, v)) if k.starts_with("--") => (k, Some(v.to_string())),
            _ => (arg.as_str(), None),
        };
        let mut value = || {
            inline
                .clone()
                .or_else(|| it.next().cloned())
                .ok_or(format!("{k} needs a value"))
        };
        each(arg, k, &mut value)?;
    }
    Ok(())
}
