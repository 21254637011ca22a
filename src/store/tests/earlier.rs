//! Keys an earlier release wrote: a change of a message is checked against them as well as its
//! own key (event/key.rs says why), and only against them, never against keys written since.

use std::path::Path;

use super::super::*;
use super::{event, open, wait_for_sled_to_let_go, HOUR};
use crate::event::{Change, Event, EventId};

/// Event `n`'s id, a changed state with a new id whose earlier id is event `of`'s.
fn change_of(n: u8, of: u8, at: u64) -> Event {
    let mut changed = event(n, at);
    changed.earlier_id = Some(event(of, at).meta.id);
    changed.meta.change = Some(Change::Edited);
    changed
}

fn id(n: u8) -> EventId {
    event(n, 0).meta.id
}

/// Makes the data dir look written by a release that kept no record of which keys it wrote.
fn forget_the_upgrade(path: &Path) {
    wait_for_sled_to_let_go(path);
    {
        let db = sled::Config::new().path(path).open().unwrap();
        let meta = db.open_tree("meta").unwrap();
        assert!(meta.remove(b"earlier-keys-until").unwrap().is_some());
        db.flush().unwrap();
    }
    wait_for_sled_to_let_go(path);
}

#[tokio::test]
async fn a_change_is_a_duplicate_only_of_a_key_written_before_the_upgrade() {
    let dir = tempfile::tempdir().unwrap();
    let at = now_ms();
    {
        let store = open(&dir, HOUR);
        for n in [1, 2] {
            assert_eq!(
                store.append(event(n, at)).await.unwrap(),
                Appended::Accepted
            );
        }
        store.flush().await.unwrap();
    }
    forget_the_upgrade(dir.path());

    // Received after every event of the release before.
    let at = at + 1;
    let store = open(&dir, HOUR);
    assert_eq!(
        store.append(event(3, at)).await.unwrap(),
        Appended::Accepted
    );
    // A change of a message accepted before the upgrade may be the very state accepted then:
    // answered as that event.
    assert_eq!(
        store.append(change_of(11, 1, at)).await.unwrap(),
        Appended::DuplicateOf(id(1))
    );
    // A change of one accepted since is a change.
    assert_eq!(
        store.append(change_of(13, 3, at)).await.unwrap(),
        Appended::Accepted
    );
    // Its own repeat is a duplicate of itself.
    assert_eq!(
        store.append(change_of(13, 3, at)).await.unwrap(),
        Appended::Duplicate
    );
    // In one group, too.
    let (a, b) = (change_of(12, 2, at), change_of(14, 3, at));
    let (a, b) = tokio::join!(store.append(a), store.append(b));
    assert_eq!(a.unwrap(), Appended::DuplicateOf(id(2)));
    assert_eq!(b.unwrap(), Appended::Accepted);
    drop(store);

    // After a restart, the keys written since still do not count as earlier ones.
    wait_for_sled_to_let_go(dir.path());
    let store = open(&dir, HOUR);
    assert_eq!(
        store.append(change_of(23, 3, at)).await.unwrap(),
        Appended::Accepted
    );
    assert_eq!(
        store.append(change_of(21, 1, at)).await.unwrap(),
        Appended::DuplicateOf(id(1))
    );
}

#[tokio::test]
async fn a_new_data_dir_has_no_earlier_keys() {
    let dir = tempfile::tempdir().unwrap();
    let at = now_ms();
    let store = open(&dir, HOUR);
    assert_eq!(
        store.append(event(1, at)).await.unwrap(),
        Appended::Accepted
    );
    assert_eq!(
        store.append(change_of(11, 1, at)).await.unwrap(),
        Appended::Accepted
    );
}

#[tokio::test]
async fn a_record_written_before_changes_were_named_gets_its_change_from_its_body() {
    let dir = tempfile::tempdir().unwrap();
    let store = open(&dir, HOUR);
    let mut old = event(1, now_ms());
    old.meta.kind = crate::event::Kind::Message;
    old.meta.change = None;
    old.body = bytes::Bytes::from_static(
        br#"{"messageId":"3EB0A7F00D0000000012","messageBody":"oi","isDeleted":true}"#,
    );
    assert_eq!(store.append(old).await.unwrap(), Appended::Accepted);
    let read = store.pending_after(None, Room::events(10)).unwrap();
    assert_eq!(read[0].event.meta.change, Some(Change::Deleted));
    assert_eq!(
        read[0].event.meta.routing_key(),
        "message.7.default.deleted"
    );
}
