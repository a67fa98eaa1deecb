//! Standard AWS configuration for subcommands that work on a deployed stack:
//! profile, region and endpoint URL, from options or the usual environment
//! variables, the same way the AWS CLI and SDKs read them.

use anyhow::{Result, bail};
use aws_config::{BehaviorVersion, Region, SdkConfig};
use clap::Args;

/// `--profile`, `--region` and `--endpoint-url`.
#[derive(Debug, Clone, Default, Args)]
pub struct AwsOptions {
    /// Named profile from ~/.aws/config and ~/.aws/credentials [env: AWS_PROFILE].
    #[arg(long, value_name = "NAME")]
    pub profile: Option<String>,
    /// AWS region of the stack, such as eu-west-1 [env: AWS_REGION, else the profile's region].
    #[arg(long, value_name = "REGION")]
    pub region: Option<String>,
    /// Endpoint URL for every AWS service, for an emulator such as the local stack's
    /// [env: AWS_ENDPOINT_URL].
    #[arg(long, value_name = "URL")]
    pub endpoint_url: Option<String>,
}

impl AwsOptions {
    /// Loads the AWS configuration, with these options over the environment
    /// and the shared configuration files.
    pub async fn load(&self) -> Result<SdkConfig> {
        let mut loader = aws_config::defaults(BehaviorVersion::latest());
        if let Some(profile) = &self.profile {
            loader = loader.profile_name(profile);
        }
        if let Some(region) = &self.region {
            loader = loader.region(Region::new(region.clone()));
        }
        if let Some(endpoint) = &self.endpoint_url {
            loader = loader.endpoint_url(endpoint);
        }
        let config = loader.load().await;
        if config.region().is_none() {
            bail!("no AWS region is configured: pass --region, set AWS_REGION, or set a region in the profile");
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn options_override_the_environment() {
        let options = AwsOptions {
            profile: None,
            region: Some("eu-west-1".to_owned()),
            endpoint_url: Some("http://127.0.0.1:4566".to_owned()),
        };

        let config = options.load().await.unwrap();

        assert_eq!(config.region().map(|region| region.as_ref()), Some("eu-west-1"));
        assert_eq!(config.endpoint_url(), Some("http://127.0.0.1:4566"));
    }
}
