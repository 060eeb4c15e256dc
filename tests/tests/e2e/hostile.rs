//! Hostile input and faults: nothing lost, nothing leaked, nobody let in as someone else.
