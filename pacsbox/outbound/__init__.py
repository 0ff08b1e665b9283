"""Images that leave by themselves: forwards, routes, commitment, backups (SCU-3..9).

Every outbound job is a row of the durable queue (``db.queue``); this room
sends what the queue asks for and tells it what happened.
"""
