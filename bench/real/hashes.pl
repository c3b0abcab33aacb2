# Perl hashes and strings: generated words counted in a hash, joined into
# text, scanned with a regex into a hash of arrays. Keys are sorted before
# they reach the digest, since Perl randomises hash order per process.
use strict;
use warnings;
use Digest::MD5;

my $rounds = shift // 10;
my $ctx = Digest::MD5->new;
for my $round (1 .. $rounds) {
    my (%count, @words);
    for my $i (1 .. 30000) {
        my $w = join '', map { chr(97 + ($i * $_ + $round) % 26) } 1 .. (3 + $i % 8);
        push @words, $w;
        $count{$w}++;
    }
    my $text = join ' ', @words;
    my %at;
    while ($text =~ /(\w+)/g) { push @{ $at{ substr($1, 0, 2) } }, pos($text) }
    $ctx->add("$_=$count{$_};") for sort keys %count;
    $ctx->add($_, scalar @{ $at{$_} }) for sort keys %at;
}
print $ctx->hexdigest, "\n";
