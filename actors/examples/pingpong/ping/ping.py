"""ping: plays ping-pong with the ``pong`` actor over an actor-to-actor channel.

Spawn both (``pingpong/pong/manifest.toml`` and ``pingpong/ping/manifest.toml``), then::

    theaterctl request ping '{"type": "start", "rounds": 3}'
    theaterctl request ping '{"type": "summary"}'

Requests (JSON):
    {"type": "start", "rounds": N}     N from 0 to 10000 (default 3); optional
                                       "pong": the actor to play with (default
                                       the state's "pong", i.e. "pong")
        -> {"channel": id, "peer": "pong", "rounds": N, "pings": 1,
            "pongs": 0, "status": "playing"}   (or "done" when N is 0)
    {"type": "summary"}                the latest game; {"type": "summary",
                                       "channel": id} for an earlier one
        -> {"channel": id, "peer": "pong", "rounds": N, "pings": N,
            "pongs": N, "status": "done"}

On the channel ping sends ``{"ping": i}`` and pong answers ``{"pong": i}``.

Why ``start`` cannot wait for the whole game: channel messages to an actor
arrive through its mailbox, which is handled one message at a time, so pong's
answers can only reach ping *after* the ``start`` handler has returned.  So
``start`` opens the channel (from inside the handler; it returns once pong
accepted), serves the first ping and replies at once; each answer then
arrives in ``handle_channel_message``, which serves the next ping, and after
round N ping closes the channel and the game's status becomes "done" (or
"closed" if pong closed the channel first).  Ask for the ``summary``.
The last 100 finished games are remembered.  State: ``{"pong": name,
"games": {channel_id: game}, "last": channel_id}``.
"""

from __future__ import annotations

import json
from typing import Any

from actors import message_server

MAX_ROUNDS = 10_000
DEFAULT_ROUNDS = 3
KEEP_GAMES = 100  # finished games remembered for "summary"


def _load(state: bytes | None) -> dict[str, Any]:
    doc = json.loads(state) if state else {}
    doc.setdefault("pong", "pong")
    doc.setdefault("games", {})
    doc.setdefault("last", "")
    return doc


def _dump(doc: dict[str, Any]) -> bytes:
    return json.dumps(doc).encode()


def _serve(channel_id: str, game: dict[str, Any]) -> None:
    game["pings"] += 1
    message_server.send_on_channel(channel_id, json.dumps({"ping": game["pings"]}).encode())


def _finish(channel_id: str, game: dict[str, Any]) -> None:
    game["status"] = "done"
    message_server.close_channel(channel_id)


def _prune(games: dict[str, dict[str, Any]]) -> None:
    finished = [cid for cid, g in games.items() if g["status"] != "playing"]
    for cid in finished[: max(len(finished) - KEEP_GAMES, 0)]:
        del games[cid]


def _view(channel_id: str, game: dict[str, Any]) -> bytes:
    return json.dumps({"channel": channel_id, **game}).encode()


def handle_request(state: bytes | None, params: tuple[bytes]) -> tuple[bytes | None, tuple[bytes]]:
    message = json.loads(params[0])
    if not isinstance(message, dict):
        raise ValueError('expected {"type": "start", "rounds": N} or {"type": "summary"}')
    doc = _load(state)
    kind = message.get("type")
    if kind == "start":
        rounds = message.get("rounds", DEFAULT_ROUNDS)
        if not isinstance(rounds, int) or isinstance(rounds, bool) or not 0 <= rounds <= MAX_ROUNDS:
            raise ValueError(f"rounds must be an integer from 0 to {MAX_ROUNDS}")
        peer = message.get("pong") or doc["pong"]
        if not isinstance(peer, str):
            raise ValueError("pong must be an actor name or id")
        channel_id = message_server.open_channel(peer, json.dumps({"rounds": rounds}).encode())
        game = {"peer": peer, "rounds": rounds, "pings": 0, "pongs": 0, "status": "playing"}
        if rounds == 0:
            _finish(channel_id, game)
        else:
            _serve(channel_id, game)
        doc["games"][channel_id] = game
        doc["last"] = channel_id
        _prune(doc["games"])
        return _dump(doc), (_view(channel_id, game),)
    if kind == "summary":
        channel_id = message.get("channel") or doc["last"]
        game = doc["games"].get(channel_id)
        if game is None:
            raise ValueError("no such game" if message.get("channel") else 'no game yet: send {"type": "start"}')
        return state, (_view(channel_id, game),)
    raise ValueError(f"unknown request type {kind!r} (expected start or summary)")


def handle_channel_message(state: bytes | None, params: tuple[str, bytes]) -> tuple[bytes | None]:
    channel_id, msg = params
    doc = _load(state)
    game = doc["games"].get(channel_id)
    if game is None or game["status"] != "playing":
        return (state,)
    answer = json.loads(msg)
    if not isinstance(answer, dict) or answer.get("pong") != game["pings"]:
        raise ValueError(f"expected {{\"pong\": {game['pings']}}}, got {bytes(msg)[:60]!r}")
    game["pongs"] += 1
    if game["pongs"] >= game["rounds"]:
        _finish(channel_id, game)
    else:
        _serve(channel_id, game)
    return (_dump(doc),)


def handle_channel_close(state: bytes | None, params: tuple[str]) -> tuple[bytes | None]:
    (channel_id,) = params
    doc = _load(state)
    game = doc["games"].get(channel_id)
    if game is None or game["status"] != "playing":
        return (state,)
    game["status"] = "closed"  # pong (or the daemon) closed it before the last round
    return (_dump(doc),)
