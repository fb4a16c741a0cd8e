"""Live job progress over WebSocket: events, the throttle, connections and fan-out."""
