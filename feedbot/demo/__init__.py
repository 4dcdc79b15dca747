"""``feedbot demo``: feedbot on embedded defaults watching the instrumented vault's deploy.

:mod:`~feedbot.commands.demo` is the command line, :mod:`~feedbot.demo.scenario` the story,
:mod:`~feedbot.demo.host` feedbot in-process; the rest renders what the developer received.
"""
