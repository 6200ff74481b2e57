# YouTube comment spam — the bundled example for mteach's quick start.
# Data: data/youtube/train.csv (UCI YouTube Spam Collection, files 01–04).
concept spam "Comments that advertise, solicit or link out, rather than talk about the video"
labels SPAM, HAM

field text = "CONTENT"

define link    = /https?:\/\/|www\.|\.com\b|watch\?v=|\b[a-z0-9-]+\s?\.\s?(tk|ly|net|org|info|biz)\b/i
define solicit = any("subscribe", "subscribers", "sub", "subs", "subscribing", "subscribed")
define plead   = any("please", "plz", "pls", "plzz")
define check   = any("check out", "check my", "check it out", "checked out", "go check")
define own     = lexicon("lexicons/self_promotion.txt")
define music   = any("song", "songs", "music", "voice", "beat", "lyrics", "dance", "video", "singer", "rapper")
define praise  = any("love", "best", "awesome", "amazing", "beautiful", "great", "nice", "cool", "good", "perfect")
define money   = any("money", "earn", "free", "gift card", "prize", "giveaway", "cash", "dollars")
define begging = any("like this comment", "thumbs up", "share this", "give it a like")
# Anything that asks the reader to go somewhere, buy, subscribe or like: never a plain reaction.
define selling = text ~ link or text ~ /s+u+b+s+c+r+i+b+/i or text has solicit or text has check
                 or text has own or text has plead or text has money or text has begging

# A link in a comment almost always points away from the video.
rule link       : text ~ link                                  => SPAM
# "Check out ..." is how most self-promotion starts.
rule check_out  : text has check                               => SPAM
# Asking for subscribers (also "SUBSCRIBEEEE" and "subscribed").
rule subscribe  : text has solicit or text ~ /s+u+b+s+c+r+i+b+/i => SPAM
# Pointing at one's own channel, videos or music.
rule own_stuff  : text has own                                 => SPAM
# Begging for likes or shares of the comment itself.
rule like_this  : text has begging                             => SPAM
# Money, prizes and offers.
rule money      : text has money                               => SPAM
# Pleading plus a request is solicitation.
rule plead      : text has plead and text has any("check", "visit", "follow", "support", "help", "view", "views") => SPAM
# Social-network handles and invitations.
rule social     : text has any("facebook", "instagram", "twitter", "follow me", "add me") => SPAM confidence 0.8
# Long comments that talk about the channel or the viewer's profile.
rule profile    : text has any("channel", "profile", "vids") and words(text) > 8 => SPAM confidence 0.7
# Short comments are reactions to the video.
rule short      : words(text) <= 5 unless selling              => HAM
# Praise of the song or the performance, when nothing is being sold.
rule praise     : text has praise and text has music unless selling => HAM
# Talking about the view counter is what viewers do.
rule views_talk : text has any("billion", "views", "million") and words(text) <= 20 unless selling => HAM
# Laughter and emotes are reactions.
rule laugh      : text ~ /\b(lol|lmao|haha+|xd)\b|:\)|:d\b|<3/i and words(text) <= 15 unless selling => HAM
# Mentions of the artists by name are about the video (only the artists of the training
# files 01–04: the held-out file 05 is scored as unseen data).
rule artist     : text has any("psy", "katy", "perry", "eminem", "rihanna", "lmfao", "gangnam") unless selling => HAM

hint more "subscribe" => SPAM
hint more "song" => HAM
hint "great song" -> "great song, check out my channel" => SPAM

example "Check out my channel http://x.co" => SPAM
example "this song is amazing" => HAM
example "Please subscribe to my channel!" => SPAM
example "lol" => HAM
example "Eminem is the best rapper alive, his lyrics are on another level" => HAM
example "I went to the restaurant yesterday and then I thought about everything that happened" => abstain
