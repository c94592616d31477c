"""`ccr workspace start`: one party's collaboration workspace, a REST API (and the page served with it) that
acts with that party's own identity, on that party's own machine. See API.md for the contract."""
