"""The organisation: company → community (项目/小区) → building → unit → room, and the residents directory."""
