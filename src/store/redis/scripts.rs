//! The Lua scripts behind every write and every multi-key read: each runs
//! atomically in Redis, so an index never disagrees with the sessions it
//! names, a rotation lands wholly before or after a revocation, and the
//! `max_sessions` cap holds however many replicas create at once. The key
//! layout is described at the top of `prelude.lua`.

use std::sync::LazyLock;

use redis::Script;

const PRELUDE: &str = include_str!("prelude.lua");

fn script(body: &str) -> Script {
    Script::new(&format!("{PRELUDE}\n{body}"))
}

macro_rules! scripts {
    ($($name:ident => $file:literal,)*) => {
        $(pub static $name: LazyLock<Script> = LazyLock::new(|| script(include_str!($file)));)*
    };
}

scripts! {
    CREATE => "create.lua",
    UPDATE => "update.lua",
    TOUCH => "touch.lua",
    ROTATE => "rotate.lua",
    DELETE => "delete.lua",
    PURGE => "purge.lua",
    BY_USER => "by_user.lua",
    BY_HANDLE => "by_handle.lua",
    DELETE_USER => "delete_user.lua",
}
