"""Every pattern of the Convex actions and scheduling guide, running against a fake provider served by
this project (``/fake-provider/...``, see ``views.py``) through real HTTP."""
