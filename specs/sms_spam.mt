# SMS spam — the header only: concept, labels and field. Rules come from you (or `mteach suggest`).
# Data: data/sms/train.csv and test.csv (UCI SMS Spam Collection, a seeded 70/30 split).
concept sms_spam "Text messages that advertise, sell, or ask the reader to text or call a paid number"
labels SPAM, HAM

field text = "text"
