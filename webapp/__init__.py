"""The Mini App: static pages and their crypto, sealed and opened on the phone.

``webapp/static/`` holds the page sources (plain ES modules, no build tool), ``package.json``
and ``package-lock.json`` pin libsodium's JavaScript build, which ``npm ci`` puts in
``webapp/node_modules/`` (``tests/run`` does it; so must a deployment). ``webapp.routes``
builds the aiohttp sub-application that serves both, to be mounted on the bot's own web
server under ``SAFERELAY_WEBAPP_URL``'s path.
"""
